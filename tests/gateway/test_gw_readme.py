"""The README's gateway example runs as written, against the real embedded broker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.broker import EmbeddedBroker
from infra.topics import ensure_topics

README = Path(__file__).parents[2] / "README.md"


def test_readme_gateway_example_runs(
    broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (example,) = [b for b in blocks if "Gateway(settings" in b]
    monkeypatch.setenv("FLYBALL_KAFKA_BOOTSTRAP", broker.bootstrap)
    from flyball.settings import load_settings

    ensure_topics(load_settings(), broker.bootstrap)
    namespace: dict[str, object] = {}
    exec(compile(example, str(README), "exec"), namespace)
    stats = namespace["gw"].stats()  # type: ignore[attr-defined]
    assert stats.events_emitted == 1
    assert namespace["decision"].kind == "admit"  # type: ignore[attr-defined]
