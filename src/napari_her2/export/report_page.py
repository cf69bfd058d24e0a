"""The one-page slide report: an A4 portrait PNG (150 dpi or more) and PDF, by matplotlib.

The page shows the slide thumbnail, the tile overlay and the attention heatmap when a slide
model gave one, the score and category, class fractions with their intervals, confidence,
the rule or model that made the call and its evidence, how many tiles were reviewed and
changed, the model card summary, the parameters, the software version, the date, and
"not for diagnosis" when the model says so. :func:`report_lines` is the page's text, so
tests and other formats can use it without drawing.

The report is duck-typed on :class:`napari_her2.run.pipeline.SlideReport` (``slide``,
``predictor``, ``params``, ``tissue``, ``grid``, ``results``, ``call``): export code does not
import the pipeline.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..classes import CLASS_COLORS, HER2_SCORES, LABEL_NAMES
from ..scoring.cells import CELLS_SUFFIX
from ..tiles.cells import outlined_text
from ..tiles.grid import scoring_notes
from .atomic import atomic_write

A4_INCHES = (8.27, 11.69)
MIN_DPI = 150
NOT_FOR_DIAGNOSIS_LINE = "NOT FOR DIAGNOSIS: research use only."


@dataclass(frozen=True)
class PageOptions:
    """What the page shows beyond the report: review counts, a corrected tile layer."""

    dpi: int = MIN_DPI
    n_reviewed: int = 0
    n_changed: int = 0
    #: the tile label image as shown (after corrections); None: the model's own labels
    label_image: np.ndarray | None = None
    #: the call to print (after corrections); None: the report's own
    call: Any = None
    date: str = ""

    def __post_init__(self) -> None:
        if self.dpi < MIN_DPI:
            raise ValueError(f"dpi must be >= {MIN_DPI} for a readable print, got {self.dpi}")


def _model_card(report: Any) -> dict[str, Any]:
    try:
        card = dict(report.predictor.describe())
    except (AttributeError, TypeError):
        card = {}
    card.setdefault("name", report.predictor.name)
    card.setdefault("sha256", report.predictor.sha256)
    return card


def not_for_diagnosis(card: dict[str, Any]) -> bool:
    """True when the model card says the model is not for diagnosis (or says nothing about
    its intended use: a model without a stated clinical use is not for diagnosis)."""
    use = str(card.get("intended_use") or "")
    return not use or "not for diagnosis" in json.dumps(card, default=str).lower()


def _fraction_lines(call: Any) -> list[str]:
    ev = call.evidence
    lines = []
    for s in HER2_SCORES:
        frac = ev.class_fractions.get(s)
        if frac is None:
            continue
        lo, hi = ev.class_fraction_intervals.get(s, (frac, frac))
        lines.append(f"  {s:>2}: {100 * frac:5.1f}%  (range {100 * lo:.1f}-{100 * hi:.1f}%)")
    return lines


def _call_lines(call: Any) -> list[str]:
    ev = call.evidence
    lines = [call.headline()]
    if call.confidence is not None:
        lines.append(_confidence_line(call))
    if call.score is not None:
        lines.append(f"Category: {call.category_text()}")
    if call.validation is not None:
        lines.append(f"Model validation: {call.validation.text()}")
    lines.append(f"Called by: {call.method or 'n/a'}")
    if ev.her2_low is not None:
        lines.append(f"0 vs 1+: {ev.her2_low.subcategory}; P(>=1+) "
                     f"{100 * ev.her2_low.p_at_least_1plus:.0f}%")
    if ev.probs:
        lines.append("Slide model: " + ", ".join(f"P({k}) {v:.2f}" for k, v in ev.probs.items()))
    lines.append(f"Tiles: {ev.n_tumour_tiles} tumour of {ev.n_tiles} scored, "
                 f"{ev.n_unreadable} unreadable")
    rule = getattr(ev, "rule", None)
    if ev.probs is None and rule is not None and rule.as_called not in (None, call.score):
        lines.append(f"Tiles as called alone give {rule.as_called}; the call is the score "
                     "most resamplings give")
    # the fractions count each tile's called class (as the rule does); the range is the 95%
    # range of the fraction over the rule's resamplings (the tile classes read again
    # together, or after hand edits the tiles resampled), widened to include the shown value
    unit = "cells" if (call.method or "").endswith(CELLS_SUFFIX) else "tiles"
    resampled = "tiles are" if unit == "cells" else "tile classes are"
    return lines + [f"Tumour {unit} by class, as called (95% range when {resampled} "
                    "resampled, widened to include the value shown):"] + _fraction_lines(call)


def _confidence_line(call: Any) -> str:
    """"Confidence: 87% (share of resamplings giving the call)", or for a borderline call
    "Confidence: 48%, borderline 0 / 1+: 0 in 48% of resamplings, 1+ in 45%; review"."""
    text = f"Confidence: {100 * call.confidence:.0f}%"
    if call.borderline is None:
        return text
    return f"{text}, borderline {' / '.join(call.borderline)}: {call.borderline_shares()}; review"


def report_lines(report: Any, options: PageOptions | None = None) -> list[str]:
    """Every line of text on the page, in order."""
    opt = options or PageOptions()
    call = opt.call or report.call
    card = _model_card(report)
    p = report.params
    mpp = report.slide.mpp
    lines = _call_lines(call)
    cells = getattr(report.results, "cells", None)
    if cells is not None:
        lines.extend(_cells_lines(cells.summary()))
    lines.append(f"Review: {opt.n_reviewed} tiles reviewed, {opt.n_changed} changed")
    lines += [
        f"Model: {card.get('name')}  sha256 {str(card.get('sha256') or 'n/a')[:16]}",
        f"Training data: {card.get('training_data') or 'none (rule-based)'}",
        f"Intended use: {card.get('intended_use') or 'not stated'}",
        f"Parameters: tile {report.grid.tile_size} px at {report.grid.target_mpp:g} um/px, "
        f"organ {p.call.organ.value}, specimen {p.call.specimen.value}, "
        f"slide call {p.call.slide_model or 'guideline rule'}",
        *[f"Note: {n}" for n in scoring_notes(report.predictor, report.slide.mpp_source)],
        f"Slide: {Path(report.slide.path).name}, "
        + (f"{mpp.x:.4g} um/px ({report.slide.mpp_source})" if mpp else "um/px unknown"),
        f"napari-her2 {__version__}, {opt.date or _dt.date.today().isoformat()}",
    ]
    if not_for_diagnosis(card):
        lines.append(NOT_FOR_DIAGNOSIS_LINE)
    return lines


def _cells_lines(summary: dict[str, Any]) -> list[str]:
    """"Cells: 812 tumour of 1,030 found; 0 4%, 1+ 1%, 2+ 59%, 3+ 36% of tumour cells", and
    when some tumour cells were found only as interiors outlined by DAB, a line that says how
    many (:func:`~napari_her2.tiles.cells.outlined_text`)."""
    percent = summary["tumour_percent"]
    shares = ", ".join(f"{k} {v:.0f}%" for k, v in percent.items())
    outlined = outlined_text(summary)
    return [f"Cells: {summary['n_tumour_cells']:,} tumour of {summary['n_cells']:,} found"
            + (f"; {shares} of tumour cells" if shares else "")] + (
        [f"Tumour cells {outlined}: check they are carcinoma cells, not duct lumens"]
        if outlined else [])


def _thumbnail(report: Any) -> np.ndarray:
    thumb = getattr(report.tissue, "thumbnail", None)
    if thumb is not None:
        return np.asarray(thumb)
    level = report.slide.levels[-1]
    return np.asarray(level[:: max(1, level.shape[0] // 512), :: max(1, level.shape[1] // 512)])


def _label_rgba(labels: np.ndarray) -> np.ndarray:
    rgba = np.zeros((*labels.shape, 4), np.float32)
    for value, name in LABEL_NAMES.items():
        rgba[labels == value] = (*(np.array(CLASS_COLORS[name]) / 255), 0.55)
    return rgba


def _draw_images(fig: Any, report: Any, opt: PageOptions) -> None:
    h0, w0 = report.slide.dimensions
    rows, cols = report.grid.shape
    th, tw = report.grid.tile_size0
    grid_extent = (0, cols * tw, rows * th, 0)
    labels = opt.label_image if opt.label_image is not None else report.results.label_image()
    attention = (opt.call or report.call).evidence.attention
    panels = [("Slide", None), ("Tile classes", _label_rgba(np.asarray(labels)))]
    if attention is not None:
        from ..tiles.heatmap import attention_raster

        panels.append(("Attention", attention_raster(report.results, attention)))
    thumb = _thumbnail(report)
    width = 0.9 / len(panels)
    for i, (title, overlay) in enumerate(panels):
        ax = fig.add_axes((0.05 + i * width, 0.62, width - 0.01, 0.28))
        ax.imshow(thumb, extent=(0, w0, h0, 0), interpolation="antialiased")
        if overlay is not None:
            kw = {"cmap": "turbo", "alpha": 0.6, "vmin": 0, "vmax": 1} if overlay.ndim == 2 else {}
            image = ax.imshow(overlay, extent=grid_extent, interpolation="nearest", **kw)
            if overlay.ndim == 2:
                fig.colorbar(image, ax=ax, fraction=0.04, label="attention (scaled)")
        ax.set_xlim(0, w0)  # edge tiles stop at the slide's edge
        ax.set_ylim(h0, 0)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])


def _unit_rgb(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """A 0-255 RGB colour as matplotlib's 0-1 floats."""
    r, g, b = rgb
    return r / 255, g / 255, b / 255


def _draw_legend(fig: Any) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=_unit_rgb(CLASS_COLORS[n]), label=n)
               for n in (*HER2_SCORES, "non-tumour")]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.61), ncol=5,
               fontsize=8, frameon=False)


def render_figure(report: Any, options: PageOptions | None = None):
    """The page as a matplotlib Figure (not shown; no GUI backend needed)."""
    from matplotlib.figure import Figure

    opt = options or PageOptions()
    fig = Figure(figsize=A4_INCHES, dpi=opt.dpi)
    fig.text(0.05, 0.965, f"HER2 IHC slide report: {report.stem}", fontsize=15,
             weight="bold")
    _draw_images(fig, report, opt)
    _draw_legend(fig)
    lines = report_lines(report, opt)
    fig.text(0.05, 0.56, lines[0], fontsize=13, weight="bold", va="top", wrap=True)
    body = "\n".join(ln for ln in lines[1:] if ln != NOT_FOR_DIAGNOSIS_LINE)
    fig.text(0.05, 0.53, body, fontsize=9, va="top", family="monospace", wrap=True)
    if NOT_FOR_DIAGNOSIS_LINE in lines:
        fig.text(0.5, 0.03, NOT_FOR_DIAGNOSIS_LINE, fontsize=12, weight="bold", ha="center",
                 color="#b00000")
    return fig


def _write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_write(path, binary=True) as f:
        f.write(data)
    return path


def write_report_page(report: Any, path: str | os.PathLike,
                      options: PageOptions | None = None) -> tuple[Path, Path]:
    """Write ``<path>.png`` and ``<path>.pdf`` (``path`` with or without a suffix);
    returns both paths."""
    opt = options or PageOptions()
    base = Path(path)
    base = base.with_suffix("") if base.suffix.lower() in (".png", ".pdf") else base
    fig = render_figure(report, opt)
    lines = report_lines(report, opt)
    title = f"HER2 IHC slide report: {report.stem}"
    written = []
    for fmt, meta in (("png", {"Title": title, "Description": "\n".join(lines)}),
                      ("pdf", {"Title": title, "Subject": "\n".join(lines)})):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=opt.dpi, metadata=meta)
        written.append(_write_bytes(base.parent / f"{base.name}.{fmt}", buf.getvalue()))
    return written[0], written[1]
