"""The benchmark page's figures (docs/img/*.png), drawn from the runs' JSON in docs/benchmarks/.

    .venv/bin/python bench/plots.py        # after `make install` and `pip install -e '.[bench]'` (matplotlib)

Each JSON file is one named run: `bench/cold_start.py`'s output as it wrote it (`phases_s`), or a table of a run
as it printed it (`kind`: `bars` with `values`, `lines` with `series` of [x, y] points), with `run` saying when,
on which commit and CPU, with which command. One PNG per file, same name.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "benchmarks"
IMAGES = ROOT / "docs" / "img"


def _axes(title: str, size: tuple[float, float] = (7.5, 3.6)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=size)
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    return fig, axis


def first_start(runs: dict[str, dict], title: str):
    """Stacked bars: each run's seconds to the first /health 200, phase by phase."""
    fig, axis = _axes(title, (7.5, 3.0 + 0.5 * len(runs)))
    left = dict.fromkeys(runs, 0.0)
    phases = list(dict.fromkeys(name for run in runs.values() for name in run["phases_s"]))
    for phase in phases:
        widths = [runs[label]["phases_s"].get(phase, 0.0) for label in runs]
        axis.barh(list(runs), widths, left=[left[label] for label in runs], label=phase)
        for label, width in zip(runs, widths, strict=True):
            left[label] += width
    for label, total in left.items():
        axis.text(total + 1, label, f"{runs[label]['first_start_s']:.0f} s", va="center", fontsize=9)
    axis.set_xlabel("seconds from launch to the first /health 200")
    axis.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    return fig


def bars(values: dict[str, float], unit: str, title: str):
    fig, axis = _axes(title, (10, 1.4 + 0.35 * len(values)))  # room for long labels
    labels = list(values)[::-1]
    colors = ["tab:blue" if label.startswith("Trident") else "tab:gray" for label in labels]  # Trident stands out
    axis.barh(labels, [values[label] for label in labels], color=colors)
    axis.set_xlabel(unit)
    return fig


def lines(series: dict[str, list[list[float]]], x: str, y: str, title: str):
    fig, axis = _axes(title)
    for label, points in series.items():
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    axis.set(xscale="log", xlabel=x, ylabel=y)
    axis.legend(fontsize=8)
    return fig


def figure(data: dict):
    if data.get("kind") == "first_start":
        return first_start(data["runs"], data["title"])
    if data.get("kind") == "bars":
        return bars(data["values"], data["unit"], data["title"])
    return lines(data["series"], data["x"], data["y"], data["title"])


def main() -> int:
    IMAGES.mkdir(parents=True, exist_ok=True)
    for path in sorted(DATA.glob("*.json")):
        fig = figure(json.loads(path.read_text()))
        fig.tight_layout()
        fig.savefig(IMAGES / f"{path.stem}.png", dpi=100)
        print(IMAGES / f"{path.stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
