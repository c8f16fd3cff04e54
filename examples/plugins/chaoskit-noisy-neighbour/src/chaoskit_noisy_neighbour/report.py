"""The ``verdicts.csv`` report: one row per steady-state metric, for spreadsheets."""

from __future__ import annotations

import csv
import io
from typing import Any


def verdicts_csv(result: dict[str, Any]) -> str:
    """Run, outcome, and each judged metric's verdict (none when the run was not judged)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["run", "outcome", "metric", "verdict"])
    judged = (result.get("verdict") or {}).get("metrics", [])
    for metric in judged:
        writer.writerow([result["run"], result["outcome"], metric["metric"], metric["verdict"]])
    if not judged:
        writer.writerow([result["run"], result["outcome"], "", ""])
    return out.getvalue()
