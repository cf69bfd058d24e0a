"""Draw the import graph between napari_her2's packages as docs/import-graph.svg.

    python docs/import_graph.py [--out docs/import-graph.svg]

Each box is a package (or a module at the top); an arrow A -> B says that some module of A
imports some module of B. Boxes stand in rows by depth: a package sits above everything it
imports, so every arrow points down. The faces (CLI, widget, npe2 entry points) share the
top row; the cross-cutting modules are grey and drawn without the arrows that point to them
(every stage may use them). The graph is read by grimp (the library under
import-linter), so it shows what the import contracts in pyproject.toml check.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

PACKAGE = "napari_her2"
#: boxes left out of the picture: the package's own __init__ (it only re-exports)
HIDDEN = {PACKAGE}
FACES = {"cli", "_qt", "_reader", "_writer", "_sample_data"}
CROSS_CUTTING = {"params", "classes", "errors", "predict", "threads", "_version"}
#: cross-cutting modules that import nothing of the package share the bottom row
BOTTOM = CROSS_CUTTING - {"params"}


def stage_of(module: str) -> str:
    """``napari_her2.tiles.grid`` -> ``tiles``; the package itself stays as it is."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_edges(package: str = PACKAGE) -> dict[str, set[str]]:
    """{stage: stages it imports}, between the package's first-level members."""
    import grimp

    graph = grimp.build_graph(package)
    edges: dict[str, set[str]] = defaultdict(set)
    for module in graph.modules:
        src = stage_of(module)
        edges.setdefault(src, set())
        for imported in graph.find_modules_directly_imported_by(module):
            dst = stage_of(imported)
            if dst != src:
                edges[src].add(dst)
    return {k: v - HIDDEN for k, v in edges.items() if k not in HIDDEN}


def depths(edges: dict[str, set[str]]) -> dict[str, int]:
    """Longest path down to a stage that imports nothing of the package (0 = bottom)."""
    memo: dict[str, int] = {}

    def depth(node: str, seen: tuple[str, ...] = ()) -> int:
        if node in seen:
            raise ValueError(f"import cycle through {' -> '.join((*seen, node))}")
        if node not in memo:
            below = edges.get(node, set())
            memo[node] = 1 + max((depth(b, (*seen, node)) for b in below), default=-1)
        return memo[node]

    for node in edges:
        depth(node)
    return memo


def draw(edges: dict[str, set[str]], out: Path, packages: set[str]) -> Path:
    """Write the picture (SVG, or PNG by the suffix); ``packages``: the boxes that are
    folders (the rest are modules at the top)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # names stay text: searchable, and small
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    level = depths(edges)
    top = max(level.values()) + 1
    rows: dict[int, list[str]] = defaultdict(list)
    for node, d in level.items():
        # the faces share the top row; the cross-cutting modules, the bottom one
        rows[top if node in FACES else 0 if node in BOTTOM else d].append(node)
    rows = {i: rows[d] for i, d in enumerate(sorted(rows))}
    width = max(len(r) for r in rows.values())
    pos = {}
    for d, names in rows.items():
        names.sort()
        for i, name in enumerate(names):
            pos[name] = ((i + 0.5) * width / len(names) * 1.6, d * 1.6)
    fig, ax = plt.subplots(figsize=(2.2 * width + 1, 1.1 * len(rows) + 1))
    colours = {"face": "#fde2c8", "cross": "#e4e4e4", "stage": "#cfe3f7"}
    for src, dsts in edges.items():
        for dst in dsts - CROSS_CUTTING:  # every stage may use them: arrows would only hide
            ax.add_patch(FancyArrowPatch(pos[src], pos[dst], arrowstyle="-|>", mutation_scale=9,
                                         color="#7a7a7a", lw=0.6, shrinkA=14, shrinkB=14,
                                         connectionstyle="arc3,rad=0.04", zorder=1))
    for name, (x, y) in pos.items():
        kind = "face" if name in FACES else "cross" if name in CROSS_CUTTING else "stage"
        label = f"{name}/" if name in packages else f"{name}.py"
        ax.add_patch(FancyBboxPatch((x - 0.62, y - 0.28), 1.24, 0.56,
                                    boxstyle="round,pad=0.02", fc=colours[kind], ec="#444",
                                    lw=0.8, zorder=2))
        ax.text(x, y, label, ha="center", va="center", fontsize=10, family="monospace",
                zorder=3)
    ax.set_xlim(-0.2, width * 1.6 + 0.2)
    ax.set_ylim(-0.6, max(rows) * 1.6 + 0.6)
    ax.set_axis_off()
    ax.set_title("napari_her2: imports between packages (arrows point to what is imported;\n"
                 "the grey modules are used everywhere: arrows to them are left out)",
                 fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format=out.suffix.lstrip(".") or "svg", bbox_inches="tight",
                metadata={"Date": None} if out.suffix == ".svg" else None)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("import-graph.svg"))
    args = parser.parse_args(argv)
    import importlib
    import pkgutil

    root = importlib.import_module(PACKAGE)
    packages = {m.name for m in pkgutil.iter_modules(root.__path__) if m.ispkg}
    draw(package_edges(), args.out, packages)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
