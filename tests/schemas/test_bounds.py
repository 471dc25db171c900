"""The decoders' bounds (``schemas.bounds``) fit the history tables' column types (``ddl.sql``):
a value a decoder accepts is one ClickHouse stores, so no accepted row can stall the sink."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from schemas.bounds import DIRECTIVE_RANGES, EVENT_RANGES

DDL = (Path(__file__).resolve().parents[2] / "infra" / "ddl.sql").read_text()
# DateTime64(3) ends at 2299-12-31 23:59:59.999
_TYPE_MAX = {"UInt8": 2**8 - 1, "UInt16": 2**16 - 1, "UInt32": 2**32 - 1, "UInt64": 2**64 - 1,
             "DateTime64(3, 'UTC')": 10_413_791_999_999}


def _columns(table: str) -> dict[str, str]:
    body = re.search(rf"CREATE TABLE IF NOT EXISTS {{db}}\.{table}\s*\((.*?)\n\)", DDL, re.S)
    assert body is not None, table
    cols = {}
    for line in body.group(1).splitlines():
        m = re.match(r"\s*(\w+)\s+(.+?),?\s*$", line)
        if m and not line.strip().startswith("--"):
            cols[m.group(1)] = m.group(2).split(" DEFAULT")[0]
    return cols


def _max_of(col_type: str) -> int:
    inner = re.fullmatch(r"Nullable\((.*)\)", col_type)
    col_type = inner.group(1) if inner else col_type
    if col_type.startswith("Enum8("):
        return max(int(v) for v in re.findall(r"= (\d+)", col_type))
    return _TYPE_MAX[col_type]


EVENT_COLUMN = {"ts_ms": "ts"}
DIRECTIVE_COLUMN = {"issued_ms": "issued", "expires_ms": "expires"}
NOT_STORED = {"action.max_delay_ms"}  # enforced by gateways, not a column of history


@pytest.mark.parametrize("field", sorted(EVENT_RANGES))
def test_every_event_bound_fits_its_column(field: str) -> None:
    col_type = _columns("events")[EVENT_COLUMN.get(field, field)]
    lo, hi = EVENT_RANGES[field]
    assert 0 <= lo <= hi <= _max_of(col_type), (field, col_type)


@pytest.mark.parametrize("field", sorted(DIRECTIVE_RANGES))
def test_every_directive_bound_fits_its_column(field: str) -> None:
    leaf = field.split(".")[-1]
    cols = _columns("directives")
    name = DIRECTIVE_COLUMN.get(leaf, leaf)
    if name not in cols:
        assert field in NOT_STORED
        return
    lo, hi = DIRECTIVE_RANGES[field]
    assert 0 <= lo <= hi <= _max_of(cols[name]), (field, cols[name])
