"""The examples in docs/gateway.md run as written (every ```python block, in order)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"


@pytest.mark.integration
def test_gateway_doc_examples_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray flyball.toml from the working directory
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 5
    namespace: dict[str, object] = {"__name__": "gateway_doc"}
    try:
        for i, block in enumerate(blocks):
            exec(compile(block, f"{DOC.name}[block {i}]", "exec"), namespace)
    finally:  # never leave a broker or threads behind, even when a block fails
        gw = namespace.get("gw")
        if gw is not None:
            gw.close()  # type: ignore[attr-defined]
        broker = namespace.get("broker")
        if broker is not None:
            broker.stop()  # type: ignore[attr-defined]
