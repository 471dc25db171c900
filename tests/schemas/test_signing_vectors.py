"""Test vectors for non-Python gateways: ``schemas/vectors/control-signing.json`` holds real
directives (the governor's, on shipped scenarios) signed with fixed
test keys, and tampered ones; ``schemas/vectors/verify.mjs`` verifies them in Node.

Regenerate after a deliberate format change: ``python tests/schemas/test_signing_vectors.py``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from schemas import jsoncodec  # noqa: E402
from schemas.directive import Directive, seal  # noqa: E402
from schemas.signing import ControlKey, Keyring  # noqa: E402

VECTORS = ROOT / "schemas" / "vectors" / "control-signing.json"
VERIFIER = ROOT / "schemas" / "vectors" / "verify.mjs"


def _keys() -> tuple[ControlKey, ControlKey]:
    ed = ControlKey("test-ed25519", "ed25519",
                    private=hashlib.sha256(b"flyball test vector: ed25519").digest())
    mac = ControlKey("test-hmac", "hmac-sha256",
                     secret=hashlib.sha256(b"flyball test vector: hmac").digest())
    return ed, mac


def _real_directives() -> list[Directive]:
    from sim.runner import run
    from sim.scenario import load_scenario

    out: list[Directive] = []
    for name in ("retry-storm", "fanout-explosion", "saturation-ramp"):
        ds = [d for _, d in run(load_scenario(name), "governor").directives]
        seen: set[str] = set()
        for d in ds:  # one of each action type and detector, the first of each
            k = f"{d.reason.detector}/{d.action.type}"
            if k not in seen:
                seen.add(k)
                out.append(d)
    return out


def build_vectors() -> dict[str, Any]:
    ed, mac = _keys()
    gateway_ring = Keyring((ed, mac))
    vectors: list[dict[str, Any]] = []
    real = _real_directives()
    for i, d in enumerate(real):
        signer = ed if i % 2 == 0 else mac
        _, wire = seal(d, Keyring((signer,), signer.kid))
        vectors.append({"name": f"{d.reason.detector} {d.action.type} ({signer.alg})",
                        "id": d.id, "wire": wire.decode(), "expect": "ok"})
    d = real[0]
    _, wire = seal(d, Keyring((ed,), ed.kid))
    env = jsoncodec.loads(wire)
    body = jsoncodec.loads(env["payload"])
    body["expires_ms"] += 60_000
    forged = {**env, "payload": jsoncodec.dumps(body).decode()}
    vectors.append({"name": "payload changed after signing", "id": d.id,
                    "wire": jsoncodec.dumps(forged).decode(), "expect": "forged"})
    stranger = ControlKey("someone-else", "ed25519", private=hashlib.sha256(b"x").digest())
    _, wire = seal(d, Keyring((stranger,), stranger.kid))
    vectors.append({"name": "a key the gateway does not hold", "id": d.id,
                    "wire": wire.decode(), "expect": "unknown_key"})
    vectors.append({"name": "a bare (unsigned) directive", "id": d.id,
                    "wire": d.encode().decode(), "expect": "unsigned"})
    wrong_alg = {**jsoncodec.loads(seal(d, Keyring((mac,), mac.kid))[1]), "alg": "ed25519"}
    vectors.append({"name": "an algorithm other than the key's", "id": d.id,
                    "wire": jsoncodec.dumps(wrong_alg).decode(), "expect": "unknown_key"})
    return {
        "about": "Flyball signed control messages: verify sig over the UTF-8 bytes of payload "
                 "with keyring key kid; see schemas/signing.py and verify.mjs",
        "keyring": gateway_ring.to_json(public_only=True),
        "vectors": vectors,
    }


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def test_the_signer_reproduces_every_valid_vector_byte_for_byte() -> None:
    """Decode each signed payload and seal it again with the test key: the same bytes (the
    codec round-trips a directive exactly, and both signatures are deterministic)."""
    from schemas.control import decode_directive

    keys = {k.kid: k for k in _keys()}
    doc = json.loads(VECTORS.read_text())
    valid = [v for v in doc["vectors"] if v["expect"] == "ok"]
    assert len(valid) >= 6
    for v in valid:
        env = jsoncodec.loads(v["wire"])
        d = decode_directive(env["payload"])
        assert isinstance(d, Directive), v["name"]
        key = keys[env["kid"]]
        assert seal(d, Keyring((key,), key.kid))[1].decode() == v["wire"], v["name"]


def test_python_opens_every_vector_as_expected() -> None:
    from schemas.control import Refused, open_control
    from schemas.signing import keyring_from_json

    doc = json.loads(VECTORS.read_text())
    ring = keyring_from_json(doc["keyring"])
    for v in doc["vectors"]:
        got = open_control(v["wire"], ring, allow_unsigned=False)
        verdict = got.reason if isinstance(got, Refused) else "ok"
        assert verdict == v["expect"], v["name"]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (node) on PATH")
def test_node_verifies_the_vectors_without_reserializing() -> None:
    doc = json.loads(VECTORS.read_text())
    assert sum(v["expect"] == "ok" for v in doc["vectors"]) >= 6
    proc = subprocess.run(["node", str(VERIFIER), str(VECTORS)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("ok  ") == len(doc["vectors"])


if __name__ == "__main__":
    VECTORS.write_text(_dump(build_vectors()))
    print(f"wrote {VECTORS}")
