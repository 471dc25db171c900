"""A decision rule declares itself: its name, its detector, its config, the key kind it acts on,
and how a detection becomes actions. The governor iterates the registry
(``detectors.scores.RULES``); adding a rule is one file plus one line there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detectors.actions import EvalContext
    from detectors.config import GovernorConfig
    from detectors.policy import Planned
    from detectors.scores.base import Detector
    from detectors.windows import Key

# (context, governor config, row, key, episode age in ms) -> the actions wanted now
Plan = Callable[["EvalContext", "GovernorConfig", int, "Key", int], "list[Planned]"]


@dataclass(frozen=True, slots=True)
class Rule:
    """- ``detector``: the class that scores (its ``name`` is the rule's);
    - ``config_field``: the ``GovernorConfig`` field holding the detector's config;
    - ``kind``: the key kind the rule acts on (and reports scores for);
    - ``plan``: detection -> actions; None for a rule that only informs others (its scores are
      recorded, e.g. the organic guard);
    - ``guarded``: may not enter an episode where growth is organic (``organic_guard``);
    - ``requires``: rules whose score must be at the policy's ``enter`` on a key's endpoint for
      an episode of this one to enter there (a physical precondition: retries are a storm only
      while they overrun the service, i.e. where ``overload`` scores);
    - ``recorded``: key kinds whose scores are recorded, when not just ``kind``.
    """

    detector: type[Detector[Any]]
    config_field: str
    kind: str
    plan: Plan | None = None
    guarded: bool = False
    requires: tuple[str, ...] = ()
    recorded: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.detector.name

    @property
    def record_kinds(self) -> tuple[str, ...]:
        return self.recorded or (self.kind,)
