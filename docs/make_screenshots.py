"""Make the pictures of the README and the user guide in a real napari viewer.

    bash dev.sh screenshots                      # docs/images/*.png (runs under Xvfb)
    python docs/make_screenshots.py --out DIR    # with a display already there
    python docs/make_screenshots.py --smoke DIR  # small and quick: the test suite's check

Every picture comes from the plugin at work on the built-in sample slide (or, for the TMA,
on a small array of cores cut from the same shipped IHC image) with the shipped
checkpoints: open a slide, Score, the panel, the review queue, a region, a TMA, the MIL
attention heatmap, Grad-CAM, and the one-page report rendered from its PDF (``pdftoppm``).
Pictures are scaled to a readable width and stored as PNGs of 200 KB at most (as a palette
where RGB would be larger).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("make_screenshots")
IMAGES = Path(__file__).with_name("images")
#: the largest picture we commit, in bytes
MAX_BYTES = 200_000


# --------------------------------------------------------------------------- pictures
def save_png(rgb: np.ndarray, path: Path, width: int | None = None) -> Path:
    """``rgb`` (H, W, 3|4) as a palette PNG, scaled to ``width`` px at most."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgb[..., :3]))
    if width is not None and image.width > width:
        image = image.resize((width, round(image.height * width / image.width)),
                             Image.Resampling.LANCZOS)
    image.save(path, optimize=True)
    colours = 256  # too big as RGB: a palette (octree keeps the few class colours exact)
    while path.stat().st_size > MAX_BYTES and colours >= 32:
        image.quantize(colours, method=Image.Quantize.FASTOCTREE,
                       dither=Image.Dither.NONE).save(path, optimize=True)
        colours //= 2
    return path


def grab(widget: Any) -> np.ndarray:
    """A Qt widget as it is drawn now, (H, W, 4) RGBA."""
    from qtpy.QtGui import QImage

    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGBA8888)
    ptr = image.constBits()
    size = image.sizeInBytes()
    data = np.frombuffer(ptr.asstring(size) if hasattr(ptr, "asstring") else ptr[:size],
                         np.uint8)
    return data.reshape(image.height(), image.bytesPerLine() // 4, 4)[:, : image.width()]


def window(viewer: Any) -> np.ndarray:
    return viewer.screenshot(canvas_only=False, flash=False)


# --------------------------------------------------------------------------- driving napari
def settle(seconds: float = 0.3) -> None:
    """Let Qt draw (and napari fetch the visible tiles) for a moment."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def wait_until(done: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not done():
        if time.monotonic() > end:
            raise TimeoutError(f"{what} did not finish within {timeout:.0f} s")
        settle(0.05)
    settle()


def score(widget: Any, timeout: float = 600) -> None:
    """Press Score as a user does and wait for the run to end."""
    widget.score_button.click()
    settle(0.2)
    wait_until(lambda: widget.jobs.worker is None, timeout, "scoring")
    if widget.report is None and widget.tma.report is None:
        raise RuntimeError(f"scoring gave no report: {widget.status.text()}")


def choose(combo: Any, contains: str) -> None:
    """Select the entry of a magicgui ComboBox whose value contains ``contains``."""
    for i in range(combo.native.count()):
        value = combo.native.itemData(i)
        if value and contains in str(value):
            combo.value = value
            return
    raise LookupError(f"no choice with {contains!r} in {combo.name}")


def tma_slide(folder: Path, core_px: int) -> Path:
    """A 2 x 3 array of round cores cut from scikit-image's IHC image, on white glass."""
    from skimage.data import immunohistochemistry

    from napari_her2.slide import write_pyramid_tiff

    ihc = immunohistochemistry()
    pitch = int(core_px * 1.6)
    canvas = np.full((2 * pitch + core_px // 2, 3 * pitch + core_px // 2, 3), 245, np.uint8)
    yy, xx = np.mgrid[:core_px, :core_px]
    disc = (yy - core_px / 2) ** 2 + (xx - core_px / 2) ** 2 <= (core_px / 2) ** 2
    for k in range(6):
        r, c = divmod(k, 3)
        piece = np.rot90(ihc, k)[:core_px, :core_px]
        y, x = core_px // 4 + r * pitch, core_px // 4 + c * pitch
        canvas[y : y + core_px, x : x + core_px][disc] = piece[disc]
    return write_pyramid_tiff(folder / "tma-demo.tif", canvas, 0.5, tile=256,
                              compression="jpeg")


# --------------------------------------------------------------------------- the tour
def make(out: Path, *, smoke: bool = False) -> list[Path]:
    """Write the pictures into ``out``; returns their paths."""
    import napari

    from napari_her2._qt.layers import viewer_camera
    from napari_her2._sample_data import ihc_mosaic, sample_slide_path
    from napari_her2.export.report_page import write_report_page
    from napari_her2.slide import write_pyramid_tiff

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="napari-her2-shots-"))
    width = 700 if smoke else 1150
    size = (1000, 700) if smoke else (1500, 1150)
    slide = (write_pyramid_tiff(work / "small.tif", ihc_mosaic(rows=1, cols=2), 0.5)
             if smoke else sample_slide_path())
    written: list[Path] = []

    def shot(name: str, rgb: np.ndarray, w: int = width) -> None:
        written.append(save_png(rgb, out / f"{name}.png", w))
        log.info("wrote %s (%d KB)", written[-1], written[-1].stat().st_size // 1024)

    viewer = napari.Viewer(title="napari-her2", show=True)
    try:
        viewer.window.resize(*size)
        (image,) = viewer.open(str(slide), plugin="napari-her2")
        _, widget = viewer.window.add_plugin_dock_widget("napari-her2", "HER2 scoring")
        settle(1.0)
        shot("open-slide", window(viewer))

        # Score with the default weight-free scorer: tiles, panel, review queue
        score(widget)
        cells_layer = f"{image.name} cells"
        if cells_layer in viewer.layers:  # the tiles first; the cells get their own picture
            viewer.layers[cells_layer].visible = False
            settle(0.5)
        shot("scored", window(viewer))
        shot("score-panel", grab(widget), w=min(width, 520))

        # the cells the call counted: zoomed in to the slide's own pixels, the cells layer
        # shows each cell at its nucleus, coloured by its class
        h, w = widget.report.slide.dimensions
        mpp = widget.report.slide.require_mpp()
        camera = viewer_camera(viewer)
        camera.center = (0.45 * h * mpp.y, 0.45 * w * mpp.x)
        camera.zoom = 1.0 / mpp.x
        wait_until(lambda: cells_layer in viewer.layers
                   and len(viewer.layers[cells_layer].data) > 0, 60, "the cells layer")
        viewer.layers[cells_layer].visible = True
        viewer.layers.selection.active = viewer.layers[cells_layer]
        settle(1.0)
        shot("cells", window(viewer))
        viewer.reset_view()
        settle(0.5)

        # the review queue: a click takes the viewer to a tile that decides the call, and a
        # key corrects its class (here: the first such tile away from the slide's edge)
        from qtpy.QtCore import Qt
        from qtpy.QtTest import QTest

        review = widget.review.review_list
        rows, cols = widget.report.grid.shape
        inner = [i for i in range(review.list.count())
                 if 0 < review.cell(i)[0] < rows - 1 and 0 < review.cell(i)[1] < cols - 1]
        review.list.setCurrentRow(inner[0] if inner else 0)
        settle(0.5)
        QTest.keyClick(review.list, Qt.Key.Key_3)  # a 3+ by eye
        review.list.setCurrentRow(inner[0] if inner else 0)
        settle(1.0)
        shot("review", window(viewer))

        # export for QuPath and the one-page report (rendered from its PDF)
        widget.export_geojson(work / "tiles.geojson")
        _, pdf = write_report_page(widget.report, work / "report")
        page = render_pdf(pdf, work / "report-page")
        if page is not None:
            shot("report", page, w=min(width, 620))

        # a region: only tiles whose centre lies inside the drawn shape are scored
        h, w = widget.report.slide.dimensions
        mpp = widget.report.slide.require_mpp()
        box = np.array([[0.1 * h, 0.1 * w], [0.1 * h, 0.55 * w], [0.6 * h, 0.55 * w],
                        [0.6 * h, 0.1 * w]]) * np.array([mpp.y, mpp.x])
        viewer.add_shapes([box], shape_type="polygon", name="tumour region",
                          edge_color="yellow", face_color="transparent", edge_width=8,
                          units=tuple(image.units[-2:]))
        widget.region.refresh_regions()
        choose(widget.region.region_combo, "tumour region")
        score(widget)
        viewer.layers.selection.active = image
        viewer.reset_view()
        settle(1.0)
        shot("region", window(viewer))
        widget.region.region_combo.value = None
        viewer.layers.remove("tumour region")

        # the shipped MIL slide call brings its own tile model: attention, then Grad-CAM
        choose(widget.form.slide_model_combo, "abmil-tma")
        score(widget)
        viewer.layers[f"{image.name} HER2 tiles"].visible = False
        viewer.reset_view()
        settle(1.0)
        shot("attention", window(viewer))
        row, col = widget.review.review_list.cell(0) or (0, 0)
        worker = widget.explain.explain_tile(row, col)
        if worker is not None:
            wait_until(lambda: f"{image.name} Grad-CAM" in viewer.layers, 120, "Grad-CAM")
        widget.review.go_to_tile(row, col)
        viewer.layers[f"{image.name} attention"].visible = False
        settle(1.0)
        shot("gradcam", window(viewer))
        widget.form.slide_model_combo.value = None
        choose(widget.form.model_combo, "dab-cells")

        # a tissue microarray, core by core
        for layer in list(viewer.layers):
            viewer.layers.remove(layer)
        (tma,) = viewer.open(str(tma_slide(work, 256 if smoke else 512)), plugin="napari-her2")
        widget.form.layer_combo.value = tma.name
        widget.tma.tma_check.value = True
        score(widget)
        viewer.reset_view()
        viewer_camera(viewer).zoom *= 0.95
        settle(1.0)
        shot("tma", window(viewer))
    finally:
        viewer.close()
        shutil.rmtree(work, ignore_errors=True)
    return written


def render_pdf(pdf: Path, stem: Path) -> np.ndarray | None:
    """The first page of ``pdf`` as RGB, by poppler's ``pdftoppm`` (None when missing)."""
    exe = shutil.which("pdftoppm")
    if exe is None:
        log.warning("pdftoppm not found (Debian: poppler-utils): the report picture is skipped")
        return None
    subprocess.run([exe, "-png", "-r", "110", "-singlefile", str(pdf), str(stem)], check=True,
                   capture_output=True, timeout=120)
    from PIL import Image

    return np.asarray(Image.open(f"{stem}.png").convert("RGB"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=IMAGES, help="folder for the pictures")
    parser.add_argument("--smoke", type=Path, default=None, metavar="DIR",
                        help="small, quick pictures into DIR (a check that the tour works)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    written = make(args.smoke or args.out, smoke=args.smoke is not None)
    too_big = [p for p in written if p.stat().st_size > MAX_BYTES]
    for path in too_big:
        log.error("%s is %d KB, more than %d KB", path, path.stat().st_size // 1024,
                  MAX_BYTES // 1000)
    return 1 if too_big else 0


if __name__ == "__main__":
    sys.exit(main())
