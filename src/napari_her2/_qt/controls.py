"""The scoring form and the run bar: magicgui widgets built from the parameter definitions.

Limits, choices and labels come from :mod:`napari_her2.params` (``LIMITS`` and the enums), so
the form, the CLI and ``--config`` files can never disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, SpinBox
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..errors import Her2Error
from ..params import LIMITS, ModelParams, Organ, ScoringParams, Specimen
from .layers import META_KEY

if TYPE_CHECKING:
    import napari

#: target magnification choices: label -> µm/px (None: the model card's own resolution)
MAGNIFICATIONS: list[tuple[str, float | None]] = [
    ("model default", None),
    ("40x (0.25 µm/px)", 0.25),
    ("20x (0.5 µm/px)", 0.5),
    ("10x (1 µm/px)", 1.0),
    ("5x (2 µm/px)", 2.0),
]
#: the guideline's rule, over the scorer's tumour cells (dab-cells) or tumour tiles
RULE_CHOICE: tuple[str, str | None] = ("Guideline rule (ASCO/CAP)", None)


def _spin(name: str, kind: type = SpinBox, label: str | None = None, **kw: Any) -> Any:
    """A spin box whose range and step come from ``LIMITS[name]`` (0 = unset)."""
    lim = LIMITS[name]
    return kind(name=name, label=label or lim.label, min=0, max=lim.hi,
                step=lim.step or 1, **kw)


class FormPanel(QWidget):
    """What to score and how: image layer, models, tile geometry, organ, the slide's µm/px."""

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.layer_combo = ComboBox(name="image_layer", label="Image layer", choices=[])
        self.model_combo = ComboBox(name="model", label="Model", choices=[])
        self.slide_model_combo = ComboBox(name="slide_call", label="Slide call",
                                          choices=[RULE_CHOICE])
        self.slide_model_combo.tooltip = "What makes the slide call from the tile results"
        self.tile_spin = _spin("tile_size", label="Tile size (px, 0 = model's)", value=0)
        self.mag_combo = ComboBox(name="magnification", label="Magnification",
                                  choices=MAGNIFICATIONS)
        self.mag_combo.tooltip = ("Tile resolution. Model default: the card's; dab-cells reads "
                                  "a 40x scan at 40x (1+ membranes show only there), any "
                                  "other at 20x")
        self.organ_combo = ComboBox(name="organ", label="Organ",
                                    choices=[(o.value, o) for o in Organ], value=Organ.BREAST)
        self.specimen_combo = ComboBox(name="specimen", label="Specimen",
                                       choices=[(s.value, s) for s in Specimen],
                                       value=Specimen.RESECTION)
        self.mpp_spin = _spin("slide_mpp", FloatSpinBox, label="Slide µm/px (0 = from file)",
                              value=0.0)
        self.mpp_info = Label(name="mpp_info", label=" ", value="")
        self.pairing_info = Label(name="pairing_info", label=" ", value="")
        self.fields = Container(widgets=[
            self.layer_combo, self.model_combo, self.slide_model_combo, self.pairing_info,
            self.tile_spin,
            self.mag_combo, self.organ_combo, self.specimen_combo, self.mpp_spin, self.mpp_info,
        ])
        self.load_button = QPushButton("Load checkpoint…")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.fields.native)
        layout.addWidget(self.load_button)
        # the form keeps its natural height; the review list below absorbs a short dock
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self.load_button.clicked.connect(self._choose_checkpoint)
        self.layer_combo.changed.connect(self._on_layer_changed)
        # the Qt signal: magicgui's `changed` stays silent when the rule (value None) is chosen
        self.slide_model_combo.native.currentIndexChanged.connect(self._on_slide_model_changed)
        viewer.layers.events.inserted.connect(self.refresh_layers)
        viewer.layers.events.removed.connect(self.refresh_layers)
        self.refresh_layers()
        self.refresh_models()
        self.refresh_slide_models()

    # ------------------------------------------------------------------ choices
    def refresh_layers(self, event: Any = None) -> None:
        """List the viewer's RGB image layers, keeping the chosen one if it is still there."""
        from napari.layers import Image

        current = self.layer_combo.value
        names = [ly.name for ly in self.viewer.layers if isinstance(ly, Image) and ly.rgb]
        with self.layer_combo.changed.blocked():
            self.layer_combo.choices = names
            if current in names:
                self.layer_combo.value = current
        self._on_layer_changed()

    def refresh_models(self) -> None:
        """Fill the model list: the weight-free scorer and checkpoints with trained weights
        (read from their headers; no weights are loaded to list them)."""
        from ..models import available_predictors

        choices = [(info.name if info.path is None else f"{info.name} ({Path(info.path).name})",
                    str(info.path) if info.path else info.name)
                   for info in available_predictors()]
        self.model_combo.choices = choices

    def refresh_slide_models(self) -> None:
        """The guideline rule, then slide-level checkpoints (WHSPN, attention MIL)."""
        from ..models import available_slide_models

        self.slide_model_combo.choices = [RULE_CHOICE] + [
            (f"{info.name} ({Path(info.path).name})", str(info.path))
            for info in available_slide_models() if info.path is not None]

    def _add_choice(self, combo: ComboBox, path: str | Path) -> None:
        path = str(Path(path))
        if path not in [value for _, value in _pairs(combo)]:
            combo.choices = [*_pairs(combo), (Path(path).name, path)]
        combo.value = path

    def add_slide_model(self, path: str | Path) -> None:
        """Add a slide-level checkpoint to the list and select it (checked when scoring)."""
        self._add_choice(self.slide_model_combo, path)

    def add_checkpoint(self, path: str | Path) -> None:
        """Add a checkpoint file to the model list and select it (checked when scoring)."""
        self._add_choice(self.model_combo, path)

    def _on_slide_model_changed(self, *args: Any) -> None:
        """A slide model brings its own tile model (selected here) or its own encoder (named
        here; loaded and checked when Score is pressed)."""
        from ..errors import CheckpointError
        from ..models import read_card
        from ..models.pairing import EncoderRef, find_tile_model, slide_pairing

        path = self.slide_model_combo.value
        self.pairing_info.value = ""
        if not path:
            return
        try:
            ref = slide_pairing(read_card(Path(path)))
        except CheckpointError:  # refused, with the reason, when Score is pressed
            self.pairing_info.value = "its card cannot be read"
            return
        if ref is None:
            return
        if isinstance(ref, EncoderRef):
            self.pairing_info.value = f"encoder: {ref} (its own)"
            return
        tile = find_tile_model(ref)
        if tile is None:
            self.pairing_info.value = f"tile model {ref.name} not installed"
            return
        self.add_checkpoint(tile)
        self.pairing_info.value = f"tile model: {ref.name} (its own)"

    def _choose_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load checkpoint", "",
                                              "safetensors checkpoints (*.safetensors)")
        if path:
            self.add_checkpoint(path)

    # ------------------------------------------------------------------ what was chosen
    def image_layer(self) -> Any:
        """The chosen image layer (None when there is none)."""
        name = self.layer_combo.value
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _on_layer_changed(self, *args: Any) -> None:
        layer = self.image_layer()
        info = layer.metadata.get(META_KEY, {}) if layer is not None else {}
        mpp = info.get("mpp")
        if layer is None:
            self.mpp_info.value = ""
        elif not info.get("path"):
            self.mpp_info.value = "This layer was not opened from a slide file by napari-her2."
        elif mpp:
            self.mpp_info.value = f"File: {mpp[0]:.4g} µm/px ({info.get('mpp_source')})"
        else:
            self.mpp_info.value = "The file gives no µm/px: enter the scan resolution above."

    def slide_source(self, layer: Any) -> tuple[Any, float | None]:
        """The open Slide the layer was made from (else its path) and the user's µm/px; a
        typed µm/px rescales the layer. Raises Her2Error when the layer cannot be scored."""
        if layer is None:
            raise Her2Error("choose an image layer to score")
        info = layer.metadata.get(META_KEY, {})
        if not info.get("path"):
            raise Her2Error(f"layer {layer.name!r} was not opened from a slide file by napari-her2")
        user_mpp = self.mpp_spin.value or None
        if user_mpp is None and not info.get("mpp"):
            raise Her2Error(f"{Path(info['path']).name}: the file gives no microns per pixel; "
                            "enter 'Slide µm/px'")
        if user_mpp is not None:
            layer.scale = (user_mpp, user_mpp)
            layer.units = ("um", "um")
            info["mpp"], info["mpp_source"] = [user_mpp, user_mpp], "user"
            self.viewer.reset_view()
        return info.get("slide") or info["path"], user_mpp

    def params(self) -> ScoringParams:
        """The form as :class:`ScoringParams` (0 / "model default" = the model card's)."""
        return ScoringParams().with_overrides(
            model_name=self.model_combo.value or ModelParams().name,
            tile_size=self.tile_spin.value or None,
            target_mpp=self.mag_combo.value,
            organ=self.organ_combo.value,
            specimen=self.specimen_combo.value,
            slide_model=self.slide_model_combo.value,
        )


class RunPanel(QWidget):
    """Score and Cancel, the progress bar and the status line."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.score_button = QPushButton("Score")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.reset_progress(1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.score_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)

    def set_running(self, running: bool) -> None:
        self.score_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def reset_progress(self, steps: int) -> None:
        """Start the progress bar again at 0 of ``steps`` (at least 1)."""
        self.progress.setRange(0, max(steps, 1))
        self.progress.setValue(0)


def _pairs(combo: ComboBox) -> list[tuple[str, Any]]:
    """(label, value) of every choice of a magicgui ComboBox."""
    return [(combo.native.itemText(i), combo.native.itemData(i))
            for i in range(combo.native.count())]
