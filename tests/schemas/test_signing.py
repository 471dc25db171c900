"""Signed envelopes: exact bytes, key ids, HMAC and Ed25519, rotation, every refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings

from schemas import jsoncodec
from schemas.control import Refused, open_control
from schemas.directive import Action, Directive, Reason, Scope, seal
from schemas.signing import (
    ControlKey,
    Keyring,
    KeyringError,
    generate_key,
    keyring_from_json,
    load_keyring,
    write_keyring,
)
from tests.schemas.test_control import directives

D = Directive(
    "ep1", 1_000, 3_000, Scope(endpoint="/v1/chat"),
    Action("shed", fraction=1.0, retry_after_ms=500),
    Reason("retry_storm", 1.0, {"amplification": 3.0, "law": "r = 1.0"}),
)


def ring(alg: str = "ed25519", kid: str = "k1") -> Keyring:
    return Keyring((generate_key(kid, alg),), kid)


@pytest.mark.parametrize("alg", ["ed25519", "hmac-sha256"])
def test_a_sealed_directive_opens_with_its_keyring_and_names_its_key(alg: str) -> None:
    r = ring(alg)
    marked, wire = seal(D, r)
    assert marked.sig == "k1"
    got = open_control(wire, r, allow_unsigned=False)
    assert got == marked


def test_a_gateway_holding_only_the_public_key_verifies_but_cannot_sign() -> None:
    r = ring("ed25519")
    public = keyring_from_json(r.to_json(public_only=True))
    _, wire = seal(D, r)
    assert isinstance(open_control(wire, public, allow_unsigned=False), Directive)
    assert public.signer is None
    with pytest.raises(KeyringError):
        public.seal(b"{}")
    assert "private" not in jsoncodec.dumps(r.to_json(public_only=True)).decode()


def test_the_signature_covers_the_exact_payload_bytes() -> None:
    r = ring()
    _, wire = seal(D, r)
    env = jsoncodec.loads(wire)
    # the same directive written another way (1.0 as 1, keys reordered) is other bytes: refused
    doc = jsoncodec.loads(env["payload"])
    doc["action"]["fraction"] = 1
    env2 = {**env, "payload": json.dumps(doc, sort_keys=True, separators=(",", ":"))}
    assert open_control(jsoncodec.dumps(env2), r, allow_unsigned=False) == Refused("forged")
    # re-encoding the envelope itself (whitespace, key order) changes nothing: payload is a string
    spaced = json.dumps(env, sort_keys=True, indent=1).encode()
    assert isinstance(open_control(spaced, r, allow_unsigned=False), Directive)


def test_rotation_several_keys_are_valid_at_once() -> None:
    old, new = generate_key("2026-11", "ed25519"), generate_key("2026-12", "hmac-sha256")
    gateway = Keyring((old, new))
    for signer in (Keyring((old,), "2026-11"), Keyring((new,), "2026-12")):
        _, wire = seal(D, signer)
        assert isinstance(open_control(wire, gateway, allow_unsigned=False), Directive)
    retired = Keyring((new,))
    _, old_wire = seal(D, Keyring((old,), "2026-11"))
    assert open_control(old_wire, retired, allow_unsigned=False) == Refused("unknown_key")


def test_every_refusal_has_its_reason() -> None:
    r, other = ring(), ring()
    _, wire = seal(D, other)  # same kid, another key
    assert open_control(wire, r, allow_unsigned=False) == Refused("forged")
    assert open_control(D.encode(), r, allow_unsigned=False) == Refused("unsigned")
    assert open_control(D.encode(), None, allow_unsigned=False) == Refused("unsigned")
    assert open_control(wire, None, allow_unsigned=True) == Refused("unknown_key")
    env = jsoncodec.loads(wire)
    for patch, where in (
        ({"kid": ""}, "kid"), ({"alg": "rot13"}, "alg"), ({"payload": 5}, "payload"),
        ({"sig": "%%%"}, "sig"), ({"sig": 7}, "sig"),
    ):
        got = open_control(jsoncodec.dumps({**env, **patch}), r, allow_unsigned=False)
        assert isinstance(got, Refused) and got.reason in ("malformed", "forged"), (patch, got)
        if got.reason == "malformed":
            assert got.error is not None and got.error.where == where
    # a validly signed payload that is not a directive is malformed, not applied
    bad = Keyring((generate_key("k1"),), "k1")
    not_directive = open_control(bad.seal(b'{"v":1,"kind":"heartbeat"}'), bad, allow_unsigned=False)
    assert not_directive == Refused("malformed", not_directive.error)  # type: ignore[union-attr]
    # an envelope inside an envelope is not a directive either
    inner = bad.seal(D.encode())
    assert isinstance(open_control(bad.seal(inner), bad, allow_unsigned=False), Refused)


def test_unsigned_directives_apply_only_by_explicit_opt_in() -> None:
    assert open_control(D.encode(), None, allow_unsigned=True) == D


@settings(max_examples=40, deadline=None)
@given(directives)
def test_any_directive_survives_sealing(d: Directive) -> None:
    r = ring("hmac-sha256")
    marked, wire = seal(d, r)
    assert open_control(wire, r, allow_unsigned=False) == marked


def test_keyring_files_round_trip_and_bad_ones_are_clear(tmp_path: Path) -> None:
    r = Keyring((generate_key("a"), generate_key("b", "hmac-sha256")), "a")
    path = write_keyring(tmp_path / "keys.json", r)
    assert path.stat().st_mode & 0o077 == 0  # secrets: owner only
    back = load_keyring(path)
    _, wire = seal(D, r)
    assert isinstance(open_control(wire, back, allow_unsigned=False), Directive)
    for doc, words in (
        ({}, "'keys' list"),
        ({"keys": [{"kid": "x", "alg": "hmac-sha256", "secret": "c2hvcnQ"}]}, "16 bytes"),
        ({"keys": [{"kid": "x", "alg": "rsa"}]}, "alg"),
        ({"keys": [{"kid": "x", "alg": "ed25519"}]}, "public or a private"),
        ({"keys": [{"kid": "x", "alg": "ed25519", "public": "AAAA"}]}, "32 bytes"),
        ({"keys": [], "sign": "nope"}, "sign"),
    ):
        with pytest.raises(KeyringError, match=words):
            keyring_from_json(doc)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(KeyringError, match="cannot read"):
        load_keyring(tmp_path / "bad.json")
    with pytest.raises(KeyringError):
        ControlKey("k", "ed25519", private=b"\x01" * 32, public=b"\x02" * 32)


def test_keygen_writes_a_keyring_and_its_public_half_and_rotates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from flyball.cli import main

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "keys.json"
    assert main(["keygen", "--kid", "2026-11", "--out", str(out)]) == 0
    public = tmp_path / "keys.public.json"
    assert "private" not in public.read_text() and out.stat().st_mode & 0o077 == 0
    _, old_wire = seal(D, load_keyring(out))
    assert main(["keygen", "--kid", "2026-12", "--add-to", str(out)]) == 0
    rotated, gateway = load_keyring(out), load_keyring(public)
    assert rotated.signer is not None and rotated.signer.kid == "2026-12"
    _, new_wire = seal(D, rotated)
    for wire in (old_wire, new_wire):  # both keys verify during the rotation
        assert isinstance(open_control(wire, gateway, allow_unsigned=False), Directive)
    assert main(["keygen", "--kid", "2026-12", "--add-to", str(out)]) == 2  # duplicate kid
    assert "duplicate kid" in capsys.readouterr().err
