"""Scores -> directives: hysteresis, minimum hold, TTL refresh, release, rate cap.

Per (detector, key) an *episode*:

- enters when the score reaches ``enter`` (and the key is allowed: right key kind, not suppressed
  by the organic guard); candidates are taken highest score first (ties by key), at most
  ``max_new_per_eval`` per evaluation and while the directives issued in the current second of
  event time stay under ``max_directives_per_s``;
- lasts while the score stays at or above ``exit`` (< ``enter``), and at least ``min_hold_ms``;
- re-issues its directives every ``refresh_ms`` with the same ids and a new
  ``issued_ms``/``expires_ms`` (``expires_ms = issued_ms + ttl_ms``: a dead governor's directives
  lapse within ``ttl_ms``); refreshes and releases are never held back by the rate cap;
- may add directives while it lasts (escalation, e.g. defer -> shed);
- sheds attack fast and release slowly: a shed ``fraction`` that rises by ``escalate_step`` or
  more is re-issued at once (not at the next refresh), but the share it admits (1 - fraction) may
  grow only by the factor ``release_growth`` per refresh (from at least ``release_floor``): the
  demand a shed held back returns gradually, doubling per second like a slow start, so relaxing
  a shed does not rebuild at a stroke the overload it removed (if it does, the score rises and
  the builder's fraction takes over again). When the score is back under ``exit`` (after
  ``min_hold_ms``) an episode that still sheds more than ``release_floor`` keeps refreshing its
  sheds, relaxing as above, and ends when every shed is at or below ``release_floor``;
- ends with one explicit ``release`` per directive id.

Scopes are fixed at the first issue of each directive, so the id
``directive_id(f"{detector}:{part}", scope, onset_ms)`` is stable for the whole episode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

import numpy as np

from detectors.errors import ConfigError
from detectors.layout import F64
from detectors.windows import Key
from schemas.directive import Action, Directive, Reason, Scope, directive_id


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """- ``enter``/``exit``: hysteresis band (0.6 / 0.3: a score must be clearly high to act and
      clearly back to normal to stop, so noise around one threshold does not flap);
    - ``min_hold_ms``: 2 s, longer than one retry/backoff cycle, so a storm is not released
      between two waves;
    - ``ttl_ms`` 3 s and ``refresh_ms`` 1 s: three refreshes may be lost before a directive lapses,
      and a dead governor stops constraining anyone within 3 s;
    - ``max_new_per_eval``/``max_directives_per_s``: bound the control traffic.
    - ``escalate_step`` 0.05, ``release_growth`` 2, ``release_floor`` 0.05: fast attack, slow
      release of sheds (the admitted share at most doubles per refresh, i.e. per second).
    """

    enter: float = 0.6
    exit: float = 0.3
    min_hold_ms: int = 2_000
    ttl_ms: int = 3_000
    refresh_ms: int = 1_000
    max_new_per_eval: int = 8
    max_directives_per_s: int = 100
    escalate_step: float = 0.05
    release_growth: float = 2.0
    release_floor: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.exit < self.enter <= 1:
            raise ConfigError("PolicyConfig.enter/exit must satisfy 0 < exit < enter <= 1")
        for name in ("escalate_step", "release_floor"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"PolicyConfig.{name} must be in [0, 1)")
        if not self.release_growth > 1:
            raise ConfigError("PolicyConfig.release_growth must be > 1")
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, int) and v < 0:
                raise ConfigError(f"PolicyConfig.{f.name} must be >= 0, got {v}")
        if not 0 < self.refresh_ms < self.ttl_ms:
            raise ConfigError("PolicyConfig.refresh_ms must be in (0, ttl_ms)")


@dataclass(frozen=True, slots=True)
class Planned:
    """One directive an action builder wants: ``part`` names it within the episode."""

    part: str
    scope: Scope
    action: Action
    evidence: dict[str, float | int | str] = field(default_factory=dict)  # the law's numbers


# (detector, row, key, onset_ms, now_ms) -> planned directives
Builder = Callable[[str, int, Key, int, int], list[Planned]]


@dataclass(slots=True)
class Episode:
    detector: str
    key: Key
    onset_ms: int
    last_issue_ms: int
    scopes: dict[str, Scope] = field(default_factory=dict)
    actions: dict[str, Action] = field(default_factory=dict)  # latest wanted, per part
    sent: dict[str, Action] = field(default_factory=dict)  # last issued, per part
    ceiling: dict[str, float] = field(default_factory=dict)  # highest throttle rate planned

    def id_of(self, part: str) -> str:
        return directive_id(f"{self.detector}:{part}", self.scopes[part], self.onset_ms)


@dataclass(slots=True)
class Transitions:
    entered: list[Key] = field(default_factory=list)
    released: list[Key] = field(default_factory=list)


class Policy:
    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config if config is not None else PolicyConfig()
        self.episodes: dict[tuple[str, Key], Episode] = {}
        self._second = -1
        self._issued_in_second = 0

    def active(self) -> bool:
        return bool(self.episodes)

    def step(
        self,
        now_ms: int,
        detector: str,
        keys: list[Key],
        score: F64,
        allowed: np.ndarray,
        build: Builder,
        evidence: Callable[[int], dict[str, float | int | str]],
    ) -> tuple[list[Directive], Transitions]:
        """One evaluation of one detector over all keys (``score``/``allowed`` per row)."""
        c = self.config
        if now_ms // 1000 != self._second:
            self._second, self._issued_in_second = now_ms // 1000, 0
        out: list[Directive] = []
        moved = Transitions()
        mine = sorted(item for item in self.episodes.items() if item[0][0] == detector)
        rows = {k: i for i, k in enumerate(keys)} if mine else {}
        for (det, key), ep in mine:
            row = rows.get(key)
            s = float(score[row]) if row is not None else 0.0
            reason = Reason(detector, round(s, 6), evidence(row) if row is not None else {})
            if row is None or (s < c.exit and now_ms - ep.onset_ms >= c.min_hold_ms):
                if row is not None and self._still_shedding(ep):
                    out += self._issue(ep, [], now_ms, reason)  # decaying sheds only
                    continue
                out += [
                    self._directive(ep, p, now_ms, Action("release"), reason) for p in ep.scopes
                ]
                del self.episodes[(det, key)]
                moved.released.append(key)
                continue
            out += self._issue(ep, build(detector, row, key, ep.onset_ms, now_ms), now_ms, reason)
        fresh = np.flatnonzero((score >= c.enter) & allowed)
        order = sorted(fresh.tolist(), key=lambda r: (-float(score[r]), keys[r]))
        new_count = 0
        for row in order:
            key = keys[row]
            if (detector, key) in self.episodes or new_count >= c.max_new_per_eval:
                continue
            planned = build(detector, row, key, now_ms, now_ms)
            if not planned or self._issued_in_second + len(planned) > c.max_directives_per_s:
                continue
            ep = Episode(detector, key, now_ms, now_ms)
            self.episodes[(detector, key)] = ep
            reason = Reason(detector, round(float(score[row]), 6), evidence(row))
            out += self._issue(ep, planned, now_ms, reason)
            moved.entered.append(key)
            new_count += 1
        return out, moved

    def _still_shedding(self, ep: Episode) -> bool:
        """Whether a released-to-be episode still holds back demand it must return gradually:
        a shed above ``release_floor``, or a throttle whose rate is still under
        ``1 / release_floor`` times the highest rate the episode planned (relaxing from
        ``release_floor`` of that rate, as a shed relaxes from ``release_floor`` to nothing)."""
        c = self.config
        return any(
            (a.type == "shed" and a.fraction > c.release_floor)
            or (
                a.type == "throttle"
                and a.rate_per_s * c.release_floor < max(ep.ceiling.get(part, 0.0), 1.0)
            )
            for part, a in ep.actions.items()
        )

    def _issue(
        self, ep: Episode, planned: list[Planned], now_ms: int, reason: Reason
    ) -> list[Directive]:
        """Issue new parts, escalations at once; refresh every part when due. A shed part the
        builder no longer plans (or plans lower) decays from its last fraction."""
        c = self.config
        due = now_ms - ep.last_issue_ms >= c.refresh_ms or not ep.scopes
        law: dict[str, float | int | str] = {}
        for p in planned:
            law.update(p.evidence)
        if law:
            reason = Reason(reason.detector, reason.score, {**reason.evidence, **law})
        out = []
        wanted = {p.part: p for p in planned}
        for part, last in ep.actions.items():
            if last.type == "shed" and part not in wanted:
                wanted[part] = Planned(part, ep.scopes[part], replace(last, fraction=0.0))
            elif last.type == "throttle" and part not in wanted:
                wanted[part] = Planned(part, ep.scopes[part], replace(last, rate_per_s=math.inf))
        for p in wanted.values():
            action = p.action
            prev = ep.actions.get(p.part)
            if p.part not in ep.scopes:
                ep.scopes[p.part] = p.scope
                out.append(self._directive(ep, p.part, now_ms, action, reason))
            elif prev is not None and prev.type == action.type == "throttle":
                highest = prev.rate_per_s
                if due:
                    start = c.release_floor * ep.ceiling.get(p.part, 0.0)
                    highest = round(max(prev.rate_per_s, start, 1.0) * c.release_growth, 3)
                if action.rate_per_s > highest:
                    per_rate = prev.burst / max(prev.rate_per_s, 1.0)  # burst seconds
                    action = replace(
                        action, rate_per_s=highest, burst=round(max(1.0, highest * per_rate), 3)
                    )
                elif not due and action.rate_per_s <= ep.sent[p.part].rate_per_s * (
                    1.0 - c.escalate_step
                ):
                    out.append(self._directive(ep, p.part, now_ms, action, reason))
            elif prev is not None and prev.type == action.type == "limit":
                # a concurrency cap attacks fast and grows at most ``release_growth`` per refresh
                highest = prev.max_inflight
                if due:
                    highest = max(prev.max_inflight + 1,
                                  math.floor(prev.max_inflight * c.release_growth))
                if action.max_inflight > highest:
                    action = replace(action, max_inflight=highest)
                elif not due and action.max_inflight <= ep.sent[p.part].max_inflight * (
                    1.0 - c.escalate_step
                ):
                    out.append(self._directive(ep, p.part, now_ms, action, reason))
            elif prev is not None and prev.type == action.type == "shed":
                lowest = prev.fraction
                if due:
                    admitted = max(1.0 - prev.fraction, c.release_floor) * c.release_growth
                    lowest = round(max(0.0, 1.0 - admitted), 3)
                if action.fraction < lowest:
                    action = replace(action, fraction=lowest)
                elif not due and action.fraction >= ep.sent[p.part].fraction + c.escalate_step:
                    out.append(self._directive(ep, p.part, now_ms, action, reason))
            ep.actions[p.part] = action
            if action.type == "throttle" and math.isfinite(p.action.rate_per_s):
                ep.ceiling[p.part] = max(ep.ceiling.get(p.part, 0.0), p.action.rate_per_s)
        if due:
            fresh = {d.id for d in out}
            out += [
                self._directive(ep, part, now_ms, ep.actions[part], reason)
                for part in ep.scopes
                if ep.id_of(part) not in fresh
            ]
            ep.last_issue_ms = now_ms
        return out

    def _directive(
        self, ep: Episode, part: str, now_ms: int, action: Action, reason: Reason
    ) -> Directive:
        self._issued_in_second += 1
        ep.sent[part] = action
        return Directive(
            id=ep.id_of(part),
            issued_ms=now_ms,
            expires_ms=now_ms + self.config.ttl_ms,
            scope=ep.scopes[part],
            action=action,
            reason=reason,
        )
