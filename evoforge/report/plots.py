"""The report's figures, drawn with matplotlib (Agg, no display) into SVG text that the HTML report embeds inline:
the score of every finished trial by trial number and by time, coloured by status, with the champion line
(the best score so far)."""

from __future__ import annotations

import io
from collections.abc import Sequence

from evoforge.models import Direction
from evoforge.report.collect import Point

COLOURS = {"succeeded": "#2b7bba", "failed": "#d1495b", "pruned": "#edae49", "rejected": "#8e8e8e"}


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed: the message says how to install it."""


def _pyplot():  # noqa: ANN202 - matplotlib's module
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError as exc:
        raise PlotsUnavailable("the report's plots need matplotlib: pip install 'evoforge[report]'") from exc
    return pyplot


def best_so_far(points: Sequence[Point], direction: Direction, key: str) -> list[tuple[float, float]]:
    """(x, best score up to x) at each scored point in order of `key` ("trial_id" or "at_s")."""
    line: list[tuple[float, float]] = []
    best: float | None = None
    for p in sorted(points, key=lambda q: getattr(q, key)):
        if p.score is None:
            continue
        if best is None or direction.better(p.score, best):
            best = p.score
        line.append((float(getattr(p, key)), best))
    return line


def score_plot(points: Sequence[Point], direction: Direction, *, by: str = "trial_id",
               crownings: Sequence[Point] = (), stderr: Sequence[float] = ()) -> str:
    """SVG of every finished trial's score (failed, pruned and rejected ones on the bottom edge, where they have
    none) against the trial number (`by="trial_id"`) or the seconds since the run started (`by="at_s"`)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.2), dpi=100)
    try:
        scored = [p.score for p in points if p.score is not None]
        floor = min(scored) if scored else 0.0
        if scored and direction is Direction.MINIMIZE:
            floor = max(scored)
        for status, colour in COLOURS.items():
            mine = [p for p in points if p.status == status]
            if mine:
                ax.scatter([getattr(p, by) for p in mine], [p.score if p.score is not None else floor for p in mine],
                           s=12, c=colour, label=f"{status} ({len(mine)})", alpha=0.8,
                           marker="o" if status == "succeeded" else "x")
        line = best_so_far(points, direction, by)
        if line:
            ax.step([x for x, _ in line], [y for _, y in line], where="post", color="#222222", linewidth=1.0,
                    linestyle="--" if crownings else "-", label="best single score so far")
        if crownings:  # the champion's mean from each crowning on, with its ± standard error band
            end = max([float(getattr(p, by)) for p in points] + [float(getattr(c, by)) for c in crownings])
            xs = [float(getattr(c, by)) for c in crownings] + [end]
            means = [float(c.score or 0.0) for c in crownings]
            ax.step(xs, [*means, means[-1]], where="post", color="#6a3d9a", linewidth=1.6,
                    label="champion (mean of its evaluations)")
            for i, (mean, err) in enumerate(zip(means, stderr, strict=False)):
                ax.fill_between([xs[i], xs[i + 1]], mean - err, mean + err, color="#6a3d9a", alpha=0.18,
                                linewidth=0, label="± standard error" if i == 0 else None)
        ax.set_xlabel("trial" if by == "trial_id" else "seconds since the first trial")
        ax.set_ylabel(f"score ({direction.value})")
        ax.grid(alpha=0.3)
        if points:
            ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        out = io.StringIO()
        fig.savefig(out, format="svg")
    finally:
        plt.close(fig)
    svg = out.getvalue()
    return svg[svg.index("<svg"):]  # drop the XML prologue and doctype: the SVG goes inline into HTML
