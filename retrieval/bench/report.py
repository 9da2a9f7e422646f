"""Printing the results table and writing the JSON."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


@dataclass
class Row:
    section: str
    measure: str
    value: float
    unit: str
    baseline: str = ""  # what the ratio compares with
    ratio: float | None = None
    target: str = ""  # e.g. ">= 0.85"
    met: bool | None = None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, section: str, measure: str, value: float, unit: str, *, baseline: str = "",
            ratio: float | None = None, target: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(section, measure, round(value, 3), unit, baseline,
                             None if ratio is None else round(ratio, 3), target, met))

    def table(self) -> str:
        header = ("section", "measure", "value", "unit", "ratio", "vs", "target", "met")
        lines = [header]
        for r in self.rows:
            met = "" if r.met is None else ("yes" if r.met else "NO")
            lines.append((r.section, r.measure, f"{r.value:g}", r.unit,
                          "" if r.ratio is None else f"{r.ratio:.2f}", r.baseline, r.target, met))
        widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
        text = [" | ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
        text.insert(1, "-+-".join("-" * w for w in widths))
        return "\n".join(text)

    def to_dict(self) -> dict[str, Any]:
        return {"machine": machine(), "rows": [asdict(r) for r in self.rows], "details": self.details}

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        return path


def machine() -> dict[str, Any]:
    import psutil
    import torch

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def show_and_keep(table: str, figures: dict[str, Any], out: Path | None) -> None:
    """An evaluation's table on stdout and, with ``out``, its figures as JSON there."""
    print(table)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2))
        print(f"\nwritten to {out}")
