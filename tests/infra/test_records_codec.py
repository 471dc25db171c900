"""Feature/score messages as the history sink reads them: every key level, and bad input."""

from __future__ import annotations

import pytest

from infra.records_codec import decode_feature, decode_score
from schemas import jsoncodec
from schemas.errors import DecodeError
from schemas.records import FeatureRecord, ScoreRecord


@pytest.mark.parametrize(
    ("endpoint", "tenant"), [("/a", ""), ("/a", "acme"), ("", "acme")]
)
def test_every_key_level_round_trips(endpoint: str, tenant: str) -> None:
    f = FeatureRecord(5, 1000, endpoint, tenant, {"attempts": 3.0})
    s = ScoreRecord(5, "fanout", endpoint, tenant, 0.7, {"fanout": 4.0})
    assert decode_feature(jsoncodec.dumps(f.to_json())) == f
    assert decode_score(jsoncodec.dumps(s.to_json())) == s


@pytest.mark.parametrize(
    ("patch", "where"),
    [
        ({"endpoint": "", "tenant": ""}, "endpoint"),
        ({"endpoint": 3}, "endpoint"),
        ({"ts_ms": -1}, "ts_ms"),
        ({"v": 9}, "v"),
    ],
)
def test_bad_feature_messages_are_errors(patch: dict[str, object], where: str) -> None:
    doc = {**FeatureRecord(5, 1000, "/a", "", {}).to_json(), **patch}
    result = decode_feature(jsoncodec.dumps(doc))
    assert isinstance(result, DecodeError)
    assert result.where == where
