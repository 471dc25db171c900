"""The JSON Schema files describe what the codec writes and accepts."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from schemas import jsoncodec
from schemas.control import Heartbeat
from schemas.directive import Action, Directive, Reason, Scope, seal
from schemas.frames import decode_message, encode_event, encode_frame
from schemas.records import FeatureRecord, ScoreRecord
from schemas.signing import Keyring, generate_key

SCHEMA_DIR = Path(__file__).parents[2] / "schemas" / "json"


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


EVENT = {
    "event_id": "e1",
    "gateway_id": "g",
    "ts_ms": 1_763_900_000_000,
    "latency_ms": 12,
    "tenant": "acme",
    "agent_id": "a",
    "endpoint": "POST /v1/chat",
    "status": 1,
    "attempt": 2,
    "request_id": "r",
    "root_id": "r0",
    "parent_id": "p",
    "depth": 1,
    "priority": 3,
    "tokens_in": 10,
    "tokens_out": 20,
    "directive_id": "",
    "applied": 0,
}


def test_event_and_frame_schemas_match_codec() -> None:
    _validator("event").validate(jsoncodec.loads(encode_event(EVENT)))
    frame = jsoncodec.loads(encode_frame("g", "k", {k: [v, v] for k, v in EVENT.items()}))
    _validator("frame").validate(frame)


@pytest.mark.parametrize(
    "bad",
    [
        {"status": "maybe"},
        {"ts_ms": 0},
        {"priority": 10},
        {"prompt": "no content"},
        {"endpoint": ""},
    ],
)
def test_event_schema_and_codec_agree_on_bad_input(bad: dict[str, object]) -> None:
    doc = {"v": 1, "kind": "event", **EVENT, **bad}
    assert not _validator("event").is_valid(doc)
    assert len(decode_message(jsoncodec.dumps(doc)).events) == 0


def test_directive_heartbeat_feature_score_schemas() -> None:
    d = Directive(
        "id1",
        1,
        2,
        Scope(endpoint="/a", min_priority=5),
        Action("throttle", rate_per_s=5.0, burst=2.0, shares=(("g", 0.5),)),
        Reason("contention", 0.8, {"share": 0.7}),
    )
    _validator("directive").validate(jsoncodec.loads(d.encode()))
    _, wire = seal(d, Keyring((generate_key("k1"),), "k1"))
    _validator("signed").validate(jsoncodec.loads(wire))
    _validator("heartbeat").validate(jsoncodec.loads(Heartbeat(5, "w").encode()))
    _validator("features").validate(FeatureRecord(5, 1000, "/a", "", {"attempts": 3.0}).to_json())
    _validator("score").validate(ScoreRecord(5, "retry_storm", "/a", "", 0.5, {}).to_json())
