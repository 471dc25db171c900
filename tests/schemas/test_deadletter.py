"""Dead letters keep why and how much, never what: no request content is ever held."""

from __future__ import annotations

from schemas import jsoncodec
from schemas.deadletter import MAX_FIELDS, deadletter_record
from schemas.frames import decode_message


def test_a_rejected_event_with_a_prompt_keeps_its_field_names_and_size_not_its_text() -> None:
    secret = "tell nobody: " + "x" * 4_000
    raw = jsoncodec.dumps({"v": 1, "kind": "event", "ts_ms": "now", "endpoint": "e",
                           "status": "ok", "prompt": secret})  # fmt: skip
    result = decode_message(raw)
    assert result.errors  # ts_ms is not an integer
    record = deadletter_record("flyball.events[0]@7", result.errors, raw, 1)
    assert b"tell nobody" not in record and b"xxxx" not in record
    doc = jsoncodec.loads(record)
    assert doc["raw_bytes"] == len(raw) and "raw_b64" not in doc
    assert doc["fields"] == ["endpoint", "kind", "prompt", "status", "ts_ms", "v"]
    assert len(record) < 600  # bounded whatever was sent


def test_unreadable_or_huge_input_keeps_only_a_bounded_summary() -> None:
    assert jsoncodec.loads(deadletter_record("s", [], b"\xff not json", 1))["fields"] == []
    wide = jsoncodec.dumps({f"k{i:05d}" + "y" * 500: i for i in range(5_000)})
    doc = jsoncodec.loads(deadletter_record("s", [], wide, 1))
    assert len(doc["fields"]) == MAX_FIELDS and all(len(f) <= 64 for f in doc["fields"])
    assert doc["raw_bytes"] == len(wide)
