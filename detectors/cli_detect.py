"""``flyball detect``: score a ``timestamp,value`` CSV with the load-shape scorer.

Input: a header row ``timestamp,value``; timestamps are epoch milliseconds (integer) or ISO-8601
(``2024-05-01T12:00:00Z``; no zone = UTC). Bad rows are counted, skipped and reported on stderr
with their line numbers. Output: ``timestamp,value,anomaly_score`` (timestamps echoed as read).
Scores are high from the onset of a change; a change that persists is learned as the new normal
after ``LoadShapeConfig.relearn_points`` (30) points, so scores fall back below 0.5 after at most
that many points of a clean level shift, while shorter spikes score high for their whole length.
Returns 0 on success, 1 when nothing could be scored, 2 when the input cannot be read.
"""

from __future__ import annotations

import csv
import math
import sys
from datetime import UTC, datetime

import numpy as np

from detectors.loadshape import LoadShapeConfig, score_series

_MAX_REPORTED = 20


def parse_timestamp_ms(text: str) -> int:
    t = text.strip()
    if t.lstrip("-").isdigit():
        return int(t)
    dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // _MS


_MS = datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)


def run_detect(input_csv: str, output_csv: str, config: LoadShapeConfig | None = None) -> int:
    rows: list[tuple[str, int, str, float]] = []
    bad: list[tuple[int, str]] = []
    try:
        with open(input_csv, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or [h.strip().lower() for h in header[:2]] != ["timestamp", "value"]:
                print(f"{input_csv}: line 1: expected header 'timestamp,value'", file=sys.stderr)
                return 2
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != 2:
                    bad.append((line, f"expected 2 fields, got {len(row)}"))
                    continue
                try:
                    ts = parse_timestamp_ms(row[0])
                except ValueError:
                    bad.append((line, f"bad timestamp {row[0]!r}"))
                    continue
                try:
                    value = float(row[1])
                except ValueError:
                    bad.append((line, f"bad value {row[1]!r}"))
                    continue
                if not math.isfinite(value):
                    bad.append((line, f"value not finite {row[1]!r}"))
                    continue
                rows.append((row[0].strip(), ts, row[1].strip(), value))
    except OSError as exc:
        print(f"{input_csv}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for line, why in bad[:_MAX_REPORTED]:
        print(f"{input_csv}: line {line}: {why} (skipped)", file=sys.stderr)
    if len(bad) > _MAX_REPORTED:
        print(f"{input_csv}: ... and {len(bad) - _MAX_REPORTED} more bad rows", file=sys.stderr)
    if bad:
        print(f"{input_csv}: {len(bad)} bad rows skipped, {len(rows)} scored", file=sys.stderr)
    ts_arr = np.array([r[1] for r in rows], dtype=np.int64)
    val_arr = np.array([r[3] for r in rows], dtype=np.float64)
    scores = score_series(ts_arr, val_arr, config)
    try:
        with open(output_csv, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value", "anomaly_score"])
            for (ts_text, _, val_text, _), s in zip(rows, scores.tolist(), strict=True):
                w.writerow([ts_text, val_text, f"{s:.6f}"])
    except OSError as exc:
        print(f"{output_csv}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0 if rows else 1
