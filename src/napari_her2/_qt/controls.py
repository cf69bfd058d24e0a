"""The scoring widget's controls: the parameter form and the slide, model and slide-call lists.

A mixin of :class:`~napari_her2._qt.widget.Her2ScoringWidget` (it uses the widget's
``viewer``); it builds the input widgets and turns them into :class:`ScoringParams`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from ..overlay import META_KEY
from ..pipeline import ORGANS, SPECIMENS, ScoringParams
from .score_panel import ScorePanel

#: target magnification choices: label -> µm/px (None: the model's own resolution)
MAGNIFICATIONS: dict[str, float | None] = {
    "model default": None,
    "40x (0.25 µm/px)": 0.25,
    "20x (0.5 µm/px)": 0.5,
    "10x (1 µm/px)": 1.0,
    "5x (2 µm/px)": 2.0,
}


class ScoringControls:
    """Input widgets of the HER2 scoring widget and what they mean."""

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        self.layer_combo = QComboBox()
        self.model_combo = QComboBox()
        self.load_button = QPushButton("Load checkpoint…")
        self.slide_model_combo = QComboBox()
        self.slide_model_combo.setToolTip("What makes the slide call from the tile results")
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(32, 2048)
        self.tile_spin.setSingleStep(32)
        self.tile_spin.setValue(256)
        self.tile_spin.setSuffix(" px")
        self.mag_combo = QComboBox()
        for label, mpp in MAGNIFICATIONS.items():
            self.mag_combo.addItem(label, mpp)
        self.organ_combo = QComboBox()
        self.organ_combo.addItems(list(ORGANS))
        self.specimen_combo = QComboBox()
        self.specimen_combo.addItems(list(SPECIMENS))
        self.mpp_spin = QDoubleSpinBox()
        self.mpp_spin.setDecimals(4)
        self.mpp_spin.setRange(0.0, 50.0)
        self.mpp_spin.setSingleStep(0.05)
        self.mpp_spin.setSpecialValueText("from file")
        self.mpp_info = QLabel("")
        self.mpp_info.setWordWrap(True)
        self.score_button = QPushButton("Score")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.panel = ScorePanel(self)
        self.export_button = QPushButton("Export GeoJSON…")
        self.export_button.setEnabled(False)
        self.gradcam_button = QPushButton("Grad-CAM of tile under cursor")
        self.gradcam_button.setEnabled(False)
        self.gradcam_button.setToolTip("Explain the deep model's call on the tile under the "
                                       "mouse (CNN checkpoints only)")

        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.load_button)
        form = QFormLayout()
        form.addRow("Image layer", self.layer_combo)
        form.addRow("Model", model_row)
        form.addRow("Slide call", self.slide_model_combo)
        form.addRow("Tile size", self.tile_spin)
        form.addRow("Magnification", self.mag_combo)
        form.addRow("Organ", self.organ_combo)
        form.addRow("Specimen", self.specimen_combo)
        form.addRow("Slide µm/px", self.mpp_spin)
        form.addRow("", self.mpp_info)
        buttons = QHBoxLayout()
        buttons.addWidget(self.score_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.panel)
        layout.addWidget(self.export_button)
        layout.addWidget(self.gradcam_button)
        layout.addStretch(1)

    # ------------------------------------------------------------------ choices
    def refresh_layers(self, event: Any = None) -> None:
        from napari.layers import Image

        current = self.layer_combo.currentText()
        names = [ly.name for ly in self.viewer.layers if isinstance(ly, Image) and ly.rgb]
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        self.layer_combo.blockSignals(False)
        self._on_layer_changed()

    def refresh_models(self) -> None:
        """Fill the model list: the weight-free scorer and checkpoints with trained weights."""
        from ..models import available_predictors

        self.model_combo.clear()
        for info in available_predictors():
            label = info.name if info.path is None else f"{info.name} ({Path(info.path).name})"
            self.model_combo.addItem(label, str(info.path) if info.path else info.name)

    def refresh_slide_models(self) -> None:
        """The guideline rule, then slide-level checkpoints (WHSPN, attention MIL)."""
        from ..models import available_slide_models

        self.slide_model_combo.clear()
        self.slide_model_combo.addItem("ASCO/CAP rule over tiles", None)
        for info in available_slide_models():
            self.slide_model_combo.addItem(f"{info.name} ({Path(info.path).name})", str(info.path))

    def add_slide_model(self, path: str | Path) -> None:
        """Add a slide-level checkpoint to the list and select it (checked when scoring)."""
        path = str(Path(path))
        if self.slide_model_combo.findData(path) < 0:
            self.slide_model_combo.addItem(Path(path).name, path)
        self.slide_model_combo.setCurrentIndex(self.slide_model_combo.findData(path))

    def add_checkpoint(self, path: str | Path) -> None:
        """Add a checkpoint file to the model list and select it (checked when scoring)."""
        path = str(Path(path))
        index = self.model_combo.findData(path)
        if index < 0:
            self.model_combo.addItem(Path(path).name, path)
            index = self.model_combo.count() - 1
        self.model_combo.setCurrentIndex(index)

    def _choose_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load checkpoint", "",
                                              "safetensors checkpoints (*.safetensors)")
        if path:
            self.add_checkpoint(path)

    def image_layer(self):
        name = self.layer_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _on_layer_changed(self, *args: Any) -> None:
        layer = self.image_layer()
        info = layer.metadata.get(META_KEY, {}) if layer is not None else {}
        mpp = info.get("mpp")
        if layer is None:
            self.mpp_info.setText("")
        elif not info.get("path"):
            self.mpp_info.setText("This layer was not opened from a slide file by napari-her2.")
        elif mpp:
            self.mpp_info.setText(f"File: {mpp[0]:.4g} µm/px ({info.get('mpp_source')})")
        else:
            self.mpp_info.setText("The file gives no µm/px: enter the scan resolution above.")

    def params(self) -> ScoringParams:
        return ScoringParams(
            tile_size=self.tile_spin.value(),
            target_mpp=self.mag_combo.currentData(),
            organ=self.organ_combo.currentText(),
            specimen=self.specimen_combo.currentText(),
            slide_model=self.slide_model_combo.currentData(),
        )
