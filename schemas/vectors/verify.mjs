// Reference verifier of Flyball's signed control messages, in JavaScript (Node >= 16, no packages).
//
//   node verify.mjs control-signing.json      -> prints one verdict per vector, exits 1 on a mismatch
//
// A gateway verifies the exact bytes of `payload` (never a re-serialization of the JSON), with the
// key named by `kid`, then parses `payload` as the directive. This file is also what the test suite
// runs to prove that a non-Python implementation agrees with the Python signer.
import { createHmac, createPublicKey, timingSafeEqual, verify } from "node:crypto";
import { readFileSync } from "node:fs";

const b64u = (s) => Buffer.from(s, "base64url");

export function openControl(wire, keyring) {
  let env;
  try { env = JSON.parse(wire); } catch { return { verdict: "malformed" }; }
  if (env.kind !== "signed") return { verdict: env.kind === "directive" ? "unsigned" : "malformed" };
  const key = keyring.keys.find((k) => k.kid === env.kid);
  if (!key || key.alg !== env.alg) return { verdict: "unknown_key" };
  const payload = Buffer.from(env.payload, "utf8"); // the exact signed bytes
  const sig = b64u(env.sig);
  let ok;
  if (key.alg === "hmac-sha256") {
    const mac = createHmac("sha256", b64u(key.secret)).update(payload).digest();
    ok = mac.length === sig.length && timingSafeEqual(mac, sig);
  } else {
    // a raw 32-byte Ed25519 public key as a JWK
    const pub = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: key.public }, format: "jwk" });
    ok = verify(null, payload, pub, sig);
  }
  if (!ok) return { verdict: "forged" };
  return { verdict: "ok", directive: JSON.parse(env.payload) };
}

if (process.argv[2]) {
  const doc = JSON.parse(readFileSync(process.argv[2], "utf8"));
  let bad = 0;
  for (const v of doc.vectors) {
    const got = openControl(v.wire, doc.keyring);
    const same = got.verdict === v.expect && (got.verdict !== "ok" || got.directive.id === v.id);
    if (!same) bad++;
    console.log(`${same ? "ok  " : "FAIL"} ${v.name}: ${got.verdict} (expected ${v.expect})`);
  }
  process.exit(bad ? 1 : 0);
}
