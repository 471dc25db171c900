"""What the governor decided, as messages for the features, scores and control topics.

Directives are keyed by scope and episode, ``f"{scope.key()}|id={directive.id}"``
(``directive_key``), and signed with ``schemas.directive.sign`` when a signing key is configured.
The episode is in the key because one scope can carry several episodes at once (a storm's defer and
its shed share a scope key under different ids): on a compacted control topic each episode keeps
its latest message (its last refresh, or its release) instead of one episode overwriting another.
Features and scores are keyed by endpoint, like the events they came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas import jsoncodec
from schemas.control import Heartbeat
from schemas.directive import Directive, sign
from schemas.records import FeatureRecord, ScoreRecord


@dataclass(slots=True)
class Outputs:
    """Records to publish (and to write to history), accumulated over one batch."""

    features: list[FeatureRecord] = field(default_factory=list)
    scores: list[ScoreRecord] = field(default_factory=list)
    directives: list[Directive] = field(default_factory=list)

    def add(self, governor_output: Any, signing_key: bytes | None) -> None:
        """Append a ``GovernorOutput``; directives are signed here when a key is set."""
        self.features.extend(governor_output.features)
        self.scores.extend(governor_output.scores)
        ds: Sequence[Directive] = governor_output.directives
        if signing_key is not None:
            ds = [sign(d, signing_key) for d in ds]
        self.directives.extend(ds)

    def __len__(self) -> int:
        return len(self.features) + len(self.scores) + len(self.directives)


def encode_features(records: Sequence[FeatureRecord]) -> list[tuple[bytes, bytes]]:
    return [(r.endpoint.encode(), jsoncodec.dumps(r.to_json())) for r in records]


def encode_scores(records: Sequence[ScoreRecord]) -> list[tuple[bytes, bytes]]:
    return [(r.endpoint.encode(), jsoncodec.dumps(r.to_json())) for r in records]


def directive_key(d: Directive) -> str:
    """The control-topic key of ``d``: scope and episode (refreshes and release share it)."""
    return f"{d.scope.key()}|id={d.id}"


def encode_directives(directives: Sequence[Directive]) -> list[tuple[bytes, bytes]]:
    return [(directive_key(d).encode(), d.encode()) for d in directives]


def encode_heartbeat(worker: str, now_ms: int) -> tuple[bytes, bytes]:
    return f"heartbeat:{worker}".encode(), Heartbeat(ts_ms=now_ms, worker=worker).encode()
