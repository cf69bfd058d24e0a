"""Guard rails: import contracts (import-linter) and declared dependencies = imported ones."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "napari_her2"
#: distribution name -> top-level import name, where they differ
IMPORT_NAMES = {"scikit-image": "skimage", "scikit-learn": "sklearn", "pydicom": "pydicom",
                "openslide-python": "openslide", "openslide-bin": "openslide"}
#: imported only where napari runs the plugin (the Qt extra brings it), never by the core
GUI_ONLY = {"napari"}


def _lint_imports() -> str | None:
    exe = Path(sys.executable).with_name("lint-imports")
    return str(exe) if exe.exists() else shutil.which("lint-imports")


@pytest.mark.skipif(_lint_imports() is None, reason="import-linter is not installed")
def test_import_contracts_hold():
    out = subprocess.run([_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert re.search(r"Contracts: \d+ kept, 0 broken", out.stdout)


#: modules that may import napari: the napari entry points, the widget, layer placement, CLI
NAPARI_FACES = {"_qt", "_reader", "_writer", "_sample_data", "cli"}


def test_every_module_is_under_the_qt_and_napari_contracts():
    """The contracts list their modules by name: a new module must be added to them."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    by_name = {c["name"]: set(c.get("source_modules", [])) for c in contracts["contracts"]}
    modules = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
               if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    qt = by_name["Only _qt imports Qt"]
    assert {m for m in modules - {"_qt"} if f"napari_her2.{m}" not in qt} == set()
    core = by_name["The core never imports napari"]
    assert {m for m in modules - NAPARI_FACES if f"napari_her2.{m}" not in core} == set()


def _imported_top_level() -> set[str]:
    names: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "napari_her2"}


def _declared(requirements: list[str]) -> set[str]:
    dists = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip() for r in requirements}
    return {IMPORT_NAMES.get(d, d.replace("-", "_")) for d in dists}


def test_declared_dependencies_are_exactly_the_imported_ones():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _declared(project["dependencies"])
    extras = project["optional-dependencies"]
    optional = set().union(*(_declared(extras[name]) for name in (
        "dicom", "openslide", "features", "encoders-timm")))
    imported = _imported_top_level()
    assert imported - declared - optional - GUI_ONLY == set(), "imported but not declared"
    assert declared - imported == set(), "declared but never imported"


def _mypy() -> str | None:
    exe = Path(sys.executable).with_name("mypy")
    return str(exe) if exe.exists() else shutil.which("mypy")


@pytest.mark.skipif(_mypy() is None, reason="mypy is not installed")
def test_the_package_type_checks():
    out = subprocess.run([_mypy()], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:]


def test_opening_a_slide_does_not_load_the_scoring_stack():
    """napari imports the reader to open a slide: that must not import torch (seconds)."""
    code = ("import sys, napari_her2._reader, napari_her2; napari_her2.open_slide; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def _import_graph_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "docs" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _top_level_names() -> set[str]:
    return {p.stem if p.is_file() else p.name for p in SRC.iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}


def test_the_top_holds_the_faces_and_at_most_six_cross_cutting_modules():
    faces = {"_reader", "_writer", "_sample_data", "_version"}
    modules = {p.stem for p in SRC.glob("*.py")} - {"__init__"} - faces
    assert len(modules) <= 6, sorted(modules)


def test_no_module_is_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in [*SRC.rglob("*.py"), *(ROOT / "tests").rglob("*.py")]
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert long == {}


def test_the_import_graph_picture_is_drawn_and_names_every_package(tmp_path):
    """docs/import-graph.svg is regenerated by docs/import_graph.py; a new package or module
    at the top that the committed picture does not show means it was not regenerated."""
    script = _import_graph_script()
    edges = script.package_edges()
    script.depths(edges)  # raises on an import cycle between packages
    assert script.main(["--out", str(tmp_path / "graph.svg")]) == 0
    drawn = (tmp_path / "graph.svg").read_text()
    committed = (ROOT / "docs" / "import-graph.svg").read_text()
    for name in _top_level_names():
        label = f"{name}/" if (SRC / name).is_dir() else f"{name}.py"
        assert f">{label}<" in drawn, label
        assert f">{label}<" in committed, f"{label}: run python docs/import_graph.py"


@pytest.mark.parametrize("category", [DeprecationWarning, FutureWarning])
def test_deprecated_api_used_by_the_package_fails_the_suite(category):
    """pyproject's filterwarnings turn a deprecation attributed to napari_her2 into an error
    (napari and numpy attribute theirs to the caller), and leave other modules' alone."""
    import warnings

    with pytest.raises(category):
        warnings.warn_explicit("old API", category, "review.py", 1,
                               module="napari_her2._qt.review")
    with warnings.catch_warnings(record=True) as seen:  # the suite's filters, recorded
        warnings.warn_explicit(f"old API {category.__name__}", category, "x.py", 1,
                               module="some_other_package")
    assert len(seen) <= 1
