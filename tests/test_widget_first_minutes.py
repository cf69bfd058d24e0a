"""What a pathologist meets in the first minutes, driven as a user drives the widget (real
clicks) on a real oesophageal TMA core: the slide call brings its own tile model, the
attention map leaves the glass alone, the review queue answers every click, the panel clips
no line, and a learned call states its validation."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_her2._qt.controls import _pairs
from napari_her2._qt.layers import layer_raster, tile_labels, viewer_camera
from napari_her2._qt.score_panel import ElidedLabel
from napari_her2.params import Organ

#: a real core (label 1+); the source gives no µm/px, 0.25 is the README's estimate
CORE = "1_154ae963-bd2a-4a12-8fa9-815ba13922ae.jpg"
CORE_MPP = 0.25


@pytest.fixture
def core_widget(make_napari_viewer, shared_data):
    from napari_her2._qt.widget import Her2ScoringWidget

    path = shared_data / "her2-ihc-tma" / CORE
    if not path.is_file():
        pytest.skip(f"{path} not found")
    viewer = make_napari_viewer(show=True)
    (image,) = viewer.open(str(path), plugin="napari-her2")
    widget = Her2ScoringWidget(viewer)
    viewer.window.add_dock_widget(widget, name="HER2 scoring", area="right")
    yield viewer, widget, image.name
    widget.jobs.stop()


def _click_row(qtbot, view, row: int) -> None:
    rect = view.visualItemRect(view.item(row))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def test_a_pathologists_first_minutes_on_a_tma_core(qtbot, core_widget):
    viewer, widget, name = core_widget
    form = widget.form
    form.mpp_spin.value = CORE_MPP
    form.organ_combo.value = Organ.GASTRIC

    # 1. choosing the shipped MIL slide call selects the tile model its card names
    mil = next(v for _, v in _pairs(form.slide_model_combo) if v and "abmil-tma" in v)
    form.slide_model_combo.value = mil
    assert "her2-resnet-tma" in str(form.model_combo.value)
    assert "her2-resnet-tma" in form.pairing_info.value
    qtbot.mouseClick(widget.score_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: widget.jobs.worker is None, timeout=300_000)
    report = widget.report
    assert report is not None, widget.status.text()
    assert report.call.method == "abmil-monte-carlo"

    # 2. the attention map is transparent (NaN) on glass and unscored tiles, drawn on tiles
    tiles = viewer.layers[f"{name} HER2 tiles"]
    labels = tile_labels(tiles)
    k = layer_raster(tiles).k
    attention = np.asarray(viewer.layers[f"{name} attention"].data)
    per_tile = attention[::k, ::k][: labels.shape[0], : labels.shape[1]]
    assert (labels == 0).any(), "a TMA core has glass around it"
    assert np.isnan(per_tile[labels == 0]).all()
    assert np.isfinite(per_tile[labels != 0]).mean() > 0.9

    # 3. the review queue answers a second click on the row that is already selected
    view = widget.review.review_list.list
    qtbot.waitUntil(lambda: view.count() > 1, timeout=30_000)
    _click_row(qtbot, view, 1)
    camera = viewer_camera(viewer)
    centre = np.array(camera.center[-2:])
    camera.center = (0.0, 0.0)  # the pathologist pans away
    _click_row(qtbot, view, 1)
    assert view.currentRow() == 1
    assert np.allclose(camera.center[-2:], centre)
    qtbot.keyClick(view, Qt.Key.Key_Down)  # the keys still work
    assert view.currentRow() == 2
    assert not np.allclose(camera.center[-2:], centre)

    # 4. no line of the score panel is clipped at the dock's default width
    qtbot.waitUntil(lambda: widget.panel.isVisible(), timeout=5_000)
    for label in widget.panel.findChildren(ElidedLabel):
        metrics = label.fontMetrics()
        assert metrics.horizontalAdvance(label.text()) <= max(label.width(), 1), label.text()
        assert label.height() >= metrics.height(), label.full_text()
        if label.full_text() and label is not widget.panel.validation_label:
            assert label.toolTip().startswith(label.full_text()), "the whole line on hover"

    # 6. the learned call speaks with its validation, on the panel and in the headline
    validated = widget.panel.validation_label.full_text()
    assert validated == f"accuracy {report.call.validation.lowest:.2f} · demonstration model"
    assert "abmil-tma: validated accuracy" in widget.panel.validation_label.toolTip()
    assert "demonstration model" in report.call.headline()


def test_napari_draws_nan_transparent(make_napari_viewer):
    """The attention map relies on it: NaN shows the layer below, not the colormap's end."""
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.full((10, 10, 3), 255, np.uint8), rgb=True)
    heat = np.full((10, 10), np.nan, np.float32)
    heat[:5] = 0.0
    viewer.add_image(heat, colormap="turbo", contrast_limits=(0.0, 1.0), opacity=1.0)
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True)
    h, w = shot.shape[:2]
    assert tuple(shot[3 * h // 4, w // 2, :3]) == (255, 255, 255)  # NaN: the white below
    assert tuple(shot[h // 4, w // 2, :3]) != (255, 255, 255)  # 0: the colormap's low end
