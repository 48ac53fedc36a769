"""A PNG of end-to-end throughput against SMTP connections, one line per
end-to-end case and one for the ceiling. Needs matplotlib, which is not a
dependency of mailgate: install the optional extra ``bench``."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from benchmarks.cases import Figure


def plot_end_to_end(
    figures: list[Figure], ceilings: dict[tuple[str, int | None], float], path: Path
) -> str:
    """Write the plot to ``path``; return a line saying where, or why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return f"plot: not written to {path}: matplotlib is missing (pip install -e '.[bench]')"
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for figure in figures:
        if figure.connections:
            series[figure.case].append((figure.connections, figure.rate))
    series["ceiling (bare aiosmtpd)"] = sorted(
        (connections, rate) for (metric, connections), rate in ceilings.items()
        if metric == "rate" and connections
    )
    figure, axes = pyplot.subplots(figsize=(7, 4.5), dpi=110)
    for name, points in sorted(series.items()):
        points.sort()
        axes.plot([c for c, _ in points], [r for _, r in points], marker="o", label=name)
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("SMTP connections")
    axes.set_ylabel("mails per second")
    axes.set_title("mailgate end to end against the bare SMTP ceiling")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    pyplot.close(figure)
    return f"plot: end-to-end throughput against connections written to {path}"
