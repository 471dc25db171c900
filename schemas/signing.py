"""Signed control messages: exact bytes, key ids, HMAC or Ed25519, several keys at once.

A signed message on the control topic is an *envelope* around the directive's JSON text::

    {"v": 1, "kind": "signed", "kid": "k1", "alg": "ed25519",
     "payload": "{\\"v\\":1,\\"kind\\":\\"directive\\",...}", "sig": "<base64url, no padding>"}

The signature covers the UTF-8 bytes of ``payload`` exactly as they are (a JSON string decodes to
the same characters in every language), so a verifier never re-serializes JSON: a JavaScript
gateway that writes ``1.0`` as ``1`` verifies the same bytes as the Python worker. Then it parses
``payload`` as a directive.

- ``hmac-sha256``: a shared secret; whoever can verify can also sign.
- ``ed25519`` (``cryptography``): the worker holds the private key, gateways only the public one,
  so a gateway (or anyone who reads its configuration) cannot forge directives.

A *keyring* file (JSON, written by ``flyball keygen`` and by ``flyball up``) lists the keys valid
now and names the one that signs::

    {"sign": "k2", "keys": [{"kid": "k2", "alg": "ed25519", "private": "…", "public": "…"},
                            {"kid": "k1", "alg": "ed25519", "public": "…"}]}

Rotation: add the new key to every gateway's keyring, switch ``sign`` on the workers, and remove
the old key once its directives have expired (at most ``schemas.bounds.TTL_MS``). The public view
(``Keyring.to_json(public_only=True)``) drops the private halves of Ed25519 keys; HMAC keys have
no public half, so their secret stays in it (and the file stays mode 0600).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from schemas import jsoncodec
from schemas.errors import DecodeError

SIGNED_KIND: Final = "signed"
ALGORITHMS: Final = ("hmac-sha256", "ed25519")
MAX_KID = 64


class KeyringError(ValueError):
    """A keyring or key that cannot be used (the message says which field and why)."""


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class ControlKey:
    """One key: ``secret`` (HMAC), or ``private``/``public`` (Ed25519, raw 32 bytes each)."""

    kid: str
    alg: str
    secret: bytes | None = field(default=None, repr=False)
    private: bytes | None = field(default=None, repr=False)
    public: bytes | None = None

    def __post_init__(self) -> None:
        if not self.kid or len(self.kid) > MAX_KID:
            raise KeyringError(f"kid: must be 1-{MAX_KID} characters")
        if self.alg not in ALGORITHMS:
            raise KeyringError(f"key {self.kid}: alg must be one of {ALGORITHMS}, got {self.alg!r}")
        if self.alg == "hmac-sha256" and (self.secret is None or len(self.secret) < 16):
            raise KeyringError(f"key {self.kid}: an hmac-sha256 secret of at least 16 bytes")
        if self.alg == "ed25519":
            if self.private is None and self.public is None:
                raise KeyringError(f"key {self.kid}: ed25519 needs a public or a private key")
            for name in ("private", "public"):
                raw = getattr(self, name)
                if raw is not None and len(raw) != 32:
                    raise KeyringError(f"key {self.kid}: ed25519 {name} key must be 32 bytes")
            if self.private is not None:
                derived = _public_of(self.private)
                if self.public is not None and self.public != derived:
                    raise KeyringError(f"key {self.kid}: public key does not match the private key")
                object.__setattr__(self, "public", derived)

    @property
    def can_sign(self) -> bool:
        return self.secret is not None or self.private is not None

    def sign(self, payload: bytes) -> bytes:
        if self.alg == "hmac-sha256" and self.secret is not None:
            return hmac.new(self.secret, payload, hashlib.sha256).digest()
        if self.private is not None:
            return Ed25519PrivateKey.from_private_bytes(self.private).sign(payload)
        raise KeyringError(f"key {self.kid}: a public key cannot sign")

    def verify(self, payload: bytes, sig: bytes) -> bool:
        if self.alg == "hmac-sha256":
            assert self.secret is not None
            return hmac.compare_digest(hmac.new(self.secret, payload, hashlib.sha256).digest(), sig)
        assert self.public is not None
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(sig, payload)
        except InvalidSignature:
            return False
        return True

    def to_json(self, *, public_only: bool = False) -> dict[str, str]:
        out = {"kid": self.kid, "alg": self.alg}
        if self.secret is not None:
            out["secret"] = b64u(self.secret)
        if self.private is not None and not public_only:
            out["private"] = b64u(self.private)
        if self.public is not None:
            out["public"] = b64u(self.public)
        return out


def _public_of(private: bytes) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pub = Ed25519PrivateKey.from_private_bytes(private).public_key()
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def generate_key(kid: str, alg: str = "ed25519") -> ControlKey:
    if alg == "hmac-sha256":
        return ControlKey(kid, alg, secret=os.urandom(32))
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    raw = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    return ControlKey(kid, alg, private=raw)


@dataclass(frozen=True, slots=True)
class Sealed:
    """A signed envelope as read from the topic, not yet verified."""

    kid: str
    alg: str
    payload: bytes
    sig: bytes


class Keyring:
    """The keys valid now (by id) and the one that signs (None: this side only verifies)."""

    def __init__(self, keys: tuple[ControlKey, ...] = (), sign_kid: str | None = None) -> None:
        self.keys = {k.kid: k for k in keys}
        if len(self.keys) != len(keys):
            raise KeyringError("keys: duplicate kid")
        self.signer: ControlKey | None = None
        if sign_kid is not None:
            signer = self.keys.get(sign_kid)
            if signer is None or not signer.can_sign:
                raise KeyringError(f"sign: {sign_kid!r} is not a key of this keyring that can sign")
            self.signer = signer

    def seal(self, payload: bytes) -> bytes:
        """The envelope of ``payload`` signed by the signing key."""
        if self.signer is None:
            raise KeyringError("this keyring has no signing key")
        s = self.signer
        return jsoncodec.dumps({
            "v": 1, "kind": SIGNED_KIND, "kid": s.kid, "alg": s.alg,
            "payload": payload.decode(), "sig": b64u(s.sign(payload)),
        })

    def check(self, sealed: Sealed) -> str | None:
        """None when ``sealed`` is signed by a key of this ring, else why not
        (``unknown_key``: a kid this ring does not hold, or the wrong algorithm; ``forged``)."""
        key = self.keys.get(sealed.kid)
        if key is None or key.alg != sealed.alg:
            return "unknown_key"
        return None if key.verify(sealed.payload, sealed.sig) else "forged"

    def to_json(self, *, public_only: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "keys": [k.to_json(public_only=public_only) for k in self.keys.values()]
        }
        if self.signer is not None and not public_only:
            out["sign"] = self.signer.kid
        return out


def sealed_from_json(doc: dict[str, Any]) -> Sealed | DecodeError:
    """The envelope's fields (``kind`` is ``signed``); malformed ones are a ``DecodeError``."""
    kid, alg, payload, sig = (doc.get(k) for k in ("kid", "alg", "payload", "sig"))
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID:
        return DecodeError(f"must be a string of 1-{MAX_KID} characters", "kid")
    if alg not in ALGORITHMS:
        return DecodeError(f"must be one of {list(ALGORITHMS)}", "alg")
    if not isinstance(payload, str):
        return DecodeError("must be the signed JSON text, as a string", "payload")
    if not isinstance(sig, str) or len(sig) > 200:
        return DecodeError("must be a base64url string", "sig")
    try:
        raw_sig = unb64u(sig)
        raw_payload = payload.encode()
    except (ValueError, UnicodeEncodeError):
        return DecodeError("must be base64url (sig) and valid UTF-8 text (payload)", "sig")
    return Sealed(kid, str(alg), raw_payload, raw_sig)


def keyring_from_json(doc: Any, where: str = "keyring") -> Keyring:
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise KeyringError(f"{where}: must be an object with a 'keys' list")
    keys = []
    for i, k in enumerate(doc["keys"]):
        if not isinstance(k, dict):
            raise KeyringError(f"{where}: keys[{i}] must be an object")
        try:
            raw = {n: unb64u(k[n]) for n in ("secret", "private", "public") if n in k}
        except (ValueError, TypeError) as e:
            raise KeyringError(f"{where}: keys[{i}]: not base64url ({e})") from None
        keys.append(ControlKey(str(k.get("kid", "")), str(k.get("alg", "")), **raw))
    sign = doc.get("sign")
    return Keyring(tuple(keys), sign if isinstance(sign, str) else None)


def load_keyring(path: Path) -> Keyring:
    try:
        doc = jsoncodec.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise KeyringError(f"{path}: cannot read the keyring ({e})") from None
    return keyring_from_json(doc, str(path))


def write_keyring(path: Path, ring: Keyring, *, public_only: bool = False) -> Path:
    """Write ``ring`` to ``path`` (mode 0600 when it holds secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = jsoncodec.dumps(ring.to_json(public_only=public_only))
    secret = not public_only or any(k.secret is not None for k in ring.keys.values())
    mode = 0o600 if secret else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)  # an existing file keeps its mode otherwise
        f.write(data + b"\n")
    return path


def hmac_keyring(secret: bytes, kid: str) -> Keyring:
    """A one-key HMAC ring (the ``signing_key`` setting's shorthand)."""
    return Keyring((ControlKey(kid, "hmac-sha256", secret=secret),), kid)
