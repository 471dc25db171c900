"""What the governor decided, as messages for the features, scores and control topics.

Directives are keyed by scope and episode, ``f"{scope.key()}|id={directive.id}"``
(``directive_key``), and sealed in a signed envelope (``schemas.signing``) when a keyring is
configured (its ``sign`` key).
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
from schemas.directive import Directive, seal
from schemas.records import FeatureRecord, ScoreRecord
from schemas.signing import Keyring


@dataclass(slots=True)
class Outputs:
    """Records to publish (and to write to history), accumulated over one batch."""

    features: list[FeatureRecord] = field(default_factory=list)
    scores: list[ScoreRecord] = field(default_factory=list)
    directives: list[Directive] = field(default_factory=list)
    wire: list[bytes] = field(default_factory=list)  # each directive's message value
    late_events: int = 0  # events the governor could not use (their window had closed)

    def add(self, governor_output: Any, keyring: Keyring | None) -> None:
        """Append a ``GovernorOutput``; directives are sealed here when a keyring signs."""
        self.features.extend(governor_output.features)
        self.scores.extend(governor_output.scores)
        self.late_events += int(getattr(governor_output, "late_events", 0) or 0)
        for d in governor_output.directives:
            if keyring is not None:
                d, value = seal(d, keyring)
            else:
                value = d.encode()
            self.directives.append(d)
            self.wire.append(value)

    def __len__(self) -> int:
        return len(self.features) + len(self.scores) + len(self.directives)


def encode_features(records: Sequence[FeatureRecord]) -> list[tuple[bytes, bytes]]:
    return [(r.endpoint.encode(), jsoncodec.dumps(r.to_json())) for r in records]


def encode_scores(records: Sequence[ScoreRecord]) -> list[tuple[bytes, bytes]]:
    return [(r.endpoint.encode(), jsoncodec.dumps(r.to_json())) for r in records]


def directive_key(d: Directive) -> str:
    """The control-topic key of ``d``: scope and episode (refreshes and release share it)."""
    return f"{d.scope.key()}|id={d.id}"


def encode_directives(outputs: Outputs) -> list[tuple[bytes, bytes | None]]:
    """(key, value) per directive; a release is followed by a tombstone (value None) under the
    same key, so a compacted control topic forgets the episode: a gateway that starts later
    replays only the episodes in force (the release itself reaches the gateways that follow the
    topic live, and its tombstone is dropped by compaction after ``delete.retention.ms``)."""
    out: list[tuple[bytes, bytes | None]] = []
    for d, v in zip(outputs.directives, outputs.wire, strict=True):
        key = directive_key(d).encode()
        out.append((key, v))
        if d.action.type == "release":
            out.append((key, None))
    return out


def encode_heartbeat(worker: str, now_ms: int) -> tuple[bytes, bytes]:
    return f"heartbeat:{worker}".encode(), Heartbeat(ts_ms=now_ms, worker=worker).encode()
