"""The report's figures as PNG files (matplotlib, Agg: no display needed, the same bytes in md and HTML).

Each function returns the path it wrote, or None when the run has nothing to show (no candidate scored,
no frontier, no failure), so that the report says so instead of showing an empty chart.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.report.collect import ReportData

SCORED = "#1f77b4"
"""Scored candidates (fitness with its CI)."""
RUNNING_BEST = "#ff7f0e"
FAILED = "#d62728"
"""Failed candidates and the failure bars."""
CONFIRMED = "#2ca02c"
"""Candidates the evidence rule confirmed as the best."""
BASELINE = "#000000"
STATUS_COLOURS = {
    "evaluated": SCORED,
    "check_failed": "#ff9896",
    "failed": FAILED,
    "rejected": "#7f7f7f",
    "proposed": "#c7c7c7",
}
TOP_K = 5
"""Candidates drawn on the frontier plot: more lines than this cannot be told apart."""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window, also where a display exists
    import matplotlib.pyplot as plt

    return plt


def _plain(text: str) -> str:
    """Text matplotlib prints as is: a `$` in a candidate's name would start mathtext (and can fail)."""
    return text.replace("$", r"\$")


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def fitness_over_time(data: ReportData, path: Path) -> Path | None:
    """Fitness with its CI per candidate in design order, the running best, and where candidates failed."""
    scored = [(c, f) for c in data.candidates if (f := c.fitness)]
    if not scored:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    xs = [c.index for c, _ in scored]
    ys = [f.value for _, f in scored]
    low = [f.value - f.ci_low for _, f in scored]
    high = [f.ci_high - f.value for _, f in scored]
    ax.errorbar(xs, ys, yerr=[low, high], fmt="o", color=SCORED, capsize=3, label="fitness (95% CI)")
    best, steps = None, []
    for c in data.candidates:
        if c.fitness and (best is None or c.fitness.value > best):
            best = c.fitness.value
        if best is not None:
            steps.append((c.index, best))
    ax.step(
        [s[0] for s in steps], [s[1] for s in steps], where="post", color=RUNNING_BEST, label="running best"
    )
    confirmed = [(c, f) for c, f in scored if c.verdict in ("first", "best")]
    if confirmed:
        ax.scatter(
            [c.index for c, _ in confirmed],
            [f.value for _, f in confirmed],
            marker="*",
            s=160,
            color=CONFIRMED,
            zorder=3,
            label="confirmed best (evidence)",
        )
    failed = [c for c in data.candidates if c.fitness is None]
    if failed:
        floor = min(f.ci_low for _, f in scored)
        span = (max(f.ci_high for _, f in scored) - floor) or 1.0
        y = floor - 0.08 * span
        ax.scatter([c.index for c in failed], [y] * len(failed), marker="x", color=FAILED, label="not scored")
    ax.set_xlabel("candidate (design order)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("fitness")
    ax.set_title("Fitness over the run")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def frontier(data: ReportData, path: Path) -> Path | None:
    """The reward–KL frontier of the top candidates against the baseline, when the target reports one."""
    top = [c for c in data.ranked() if c.fitness and _drawable(c.frontier)][:TOP_K]
    if not top:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours = plt.get_cmap("tab10").colors
    for i, cand in enumerate(top):
        pts = _drawable(cand.frontier)
        label = _plain(f"#{cand.index} {cand.name}"[:40])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=colours[(i + 4) % 10], label=label)
    base = _drawable(data.baseline_frontier)
    if base:
        ax.plot(
            [p[0] for p in base], [p[1] for p in base], "s--", color=BASELINE, label=_plain(data.baseline)
        )
        for kl, reward, beta in base:
            if beta is not None:
                ax.annotate(
                    f"β={beta:g}", (kl, reward), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
    ax.margins(0.12)  # room for the β labels at the ends
    ax.set_xlabel("KL to the reference")
    ax.set_ylabel("reward")
    ax.set_title(
        f"Reward–KL frontier of the top {len(top)} candidates"
        + (f" vs {_plain(data.baseline)}" if base else "")
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def _drawable(points: list[Any]) -> list[tuple[float, float, float | None]]:
    """(kl, reward, beta) of the points that have both, by KL (a frontier reads left to right)."""
    pts = [(p.kl, p.reward, p.beta) for p in points if p.kl is not None and p.reward is not None]
    return sorted(pts, key=lambda p: p[0])


def failure_kinds(data: ReportData, path: Path) -> Path | None:
    if not data.failures:
        return None
    plt = _pyplot()
    kinds = list(reversed(data.failures))  # the most frequent on top
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.4 * len(kinds)))
    ax.barh([_plain(f.kind) for f in kinds], [f.count for f in kinds], color=FAILED)
    for i, f in enumerate(kinds):
        ax.annotate(str(f.count), (f.count, i), xytext=(3, -3), textcoords="offset points", fontsize=8)
    ax.set_xlabel("occurrences (a check round, evaluation, job or error counts once per kind)")
    ax.set_title("Failures by kind")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, path)


def lineage_edges(data: ReportData) -> list[tuple[str, str]]:
    """(parent, child) pairs inside the run. A repair's failed attempt (`<id>-a<n>`) is its own candidate,
    not a parent; parents from earlier runs or the archive are left out (they are not in this run)."""
    ids = {c.id for c in data.candidates}
    edges = []
    for cand in data.candidates:
        for parent in cand.parents:
            match = re.fullmatch(r"(.+)-a\d+", parent)
            source = (
                parent if parent in ids else (match.group(1) if match and match.group(1) in ids else None)
            )
            if source and source != cand.id and (source, cand.id) not in edges:
                edges.append((source, cand.id))
    return edges


def lineage_depths(data: ReportData) -> dict[str, int]:
    """Generation of each candidate in the tree: 0 for one with no parent in the run."""
    parents: dict[str, list[str]] = {}
    for source, child in lineage_edges(data):
        parents.setdefault(child, []).append(source)
    depth: dict[str, int] = {}
    for cand in data.candidates:  # design order: parents come first
        depth[cand.id] = 1 + max((depth.get(p, 0) for p in parents.get(cand.id, [])), default=-1)
    return depth


def edge_bends(edges: list[tuple[str, str]], where: dict[str, tuple[float, float]]) -> list[float]:
    """How much each drawn edge bends (matplotlib's arc3 `rad`): 0 for a straight line, except where the
    line would run through another candidate's node (a grandparent edge drawn over the parent's), which
    would hide an edge behind the others: those bend, alternately up and down."""
    bends, bent = [], 0
    for source, child in edges:
        (x0, y0), (x1, y1) = where[source], where[child]
        length2 = (x1 - x0) ** 2 + (y1 - y0) ** 2
        through = False
        for other, (x, y) in where.items():
            if other in (source, child) or length2 == 0:
                continue
            t = ((x - x0) * (x1 - x0) + (y - y0) * (y1 - y0)) / length2
            cross = (x - x0) * (y1 - y0) - (y - y0) * (x1 - x0)
            through = through or (0 < t < 1 and abs(cross) / length2**0.5 < 0.15)
        bends.append((0.3 if bent % 2 == 0 else -0.3) if through else 0.0)
        bent += through
    return bends


def lineage(data: ReportData, path: Path) -> Path | None:
    """The lineage tree: candidates by design order (x) and generation (y), coloured by status."""
    if not data.candidates:
        return None
    plt = _pyplot()
    depth = lineage_depths(data)
    where: dict[str, tuple[float, float]] = {c.id: (c.index, depth[c.id]) for c in data.candidates}
    fig, ax = plt.subplots(figsize=(8, 1.8 + 0.5 * (max(depth.values()) + 1)))
    edges = lineage_edges(data)
    for (source, child), bend in zip(edges, edge_bends(edges, where), strict=True):
        (x0, y0), (x1, y1) = where[source], where[child]
        arrow = {"arrowstyle": "-|>", "color": "#777777", "lw": 0.8, "shrinkA": 7, "shrinkB": 7}
        ax.annotate("", (x1, y1), (x0, y0), arrowprops=arrow | {"connectionstyle": f"arc3,rad={bend}"})
    seen: set[str] = set()
    for cand in data.candidates:
        x, y = where[cand.id]
        label = cand.status if cand.status not in seen else None
        seen.add(cand.status)
        colour = STATUS_COLOURS.get(cand.status, "#c7c7c7")
        ax.scatter([x], [y], s=120, color=colour, edgecolors="black", linewidths=0.5, zorder=3, label=label)
        if len(data.candidates) <= 60:
            ax.annotate(
                f"#{cand.index}", (x, y), xytext=(0, 11), textcoords="offset points", ha="center", fontsize=7
            )
    best = data.best()
    if best is not None:
        ax.scatter(*where[best.id], s=420, marker="*", facecolors="none", edgecolors=RUNNING_BEST, zorder=4)
    ax.invert_yaxis()  # roots on top, like a family tree
    ax.set_xlabel("candidate (design order)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("generation")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title("Lineage (arrows: parent → child; star: the best)")
    ax.legend(loc="best", fontsize=8)
    ax.margins(0.08, 0.25)
    return _save(fig, path)


def all_plots(data: ReportData, folder: Path) -> dict[str, Path]:
    """Every figure the run has material for, by name (fitness, frontier, failures, lineage)."""
    makers = {
        "fitness": fitness_over_time,
        "frontier": frontier,
        "failures": failure_kinds,
        "lineage": lineage,
    }
    out = {}
    for name, make in makers.items():
        written = make(data, folder / f"{name}.png")
        if written is not None:
            out[name] = written
    return out
