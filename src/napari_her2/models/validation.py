"""What a learned model's card says about how well it was validated, in one line.

A learned model that makes a call (a CNN tile model under the guideline rule, a WHSPN or MIL
slide model) speaks with its validation: its confidence is the model's own, and a model that
is confidently wrong is no rarer than one that is right. Wherever such a call is shown (the
panel, the CLI line, the report) the validated accuracy from the card stands beside the
confidence, and a model that has not earned trust is labelled a *demonstration model*:

- its card records no external test (images from another source than its training data), or
- its validated accuracy (cross-validated, or on the external test) is below
  :data:`DEMONSTRATION_FLOOR`, or
- its external test holds fewer than :data:`MIN_EXTERNAL_IMAGES` images.

The floor is the share of exact agreement that pathologists themselves reach on the four
HER2 classes (about 0.8 between readers); below it a model's call adds nothing a reader
could trust. Cards store metrics as training writes them: ``cross_validation`` (optionally
split by ``image`` / ``tile``) with ``accuracy`` as a number or ``{"mean": ...}``, and
``external`` with ``accuracy`` and ``n``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .card import ModelCard

#: validated accuracy a learned model must reach not to be called a demonstration model
DEMONSTRATION_FLOOR = 0.8
#: fewest images an external test needs to count
MIN_EXTERNAL_IMAGES = 30


@dataclass(frozen=True)
class Validation:
    """A model's validation as its card states it.

    accuracy: cross-validated exact accuracy (mean over folds), None if the card has none;
    folds: the number of folds; external_accuracy / n_external: accuracy on an external test
    and its number of images (None without one).
    """

    model: str
    accuracy: float | None
    folds: int | None = None
    external_accuracy: float | None = None
    n_external: int | None = None

    @property
    def demonstration(self) -> bool:
        """True unless the model shows an external test of enough images and every stated
        accuracy reaches :data:`DEMONSTRATION_FLOOR`."""
        if self.external_accuracy is None or (self.n_external or 0) < MIN_EXTERNAL_IMAGES:
            return True
        stated = [a for a in (self.accuracy, self.external_accuracy) if a is not None]
        return min(stated) < DEMONSTRATION_FLOOR

    def text(self) -> str:
        """One line, e.g. "abmil-tma: validated accuracy 0.13 (4-fold CV), 0.50 on 4
        external images; demonstration model"."""
        parts = []
        if self.accuracy is not None:
            folds = f"{self.folds}-fold CV" if self.folds else "cross-validated"
            parts.append(f"{self.accuracy:.2f} ({folds})")
        if self.external_accuracy is not None:
            parts.append(f"{self.external_accuracy:.2f} on {self.n_external or '?'} external images")
        measured = ", ".join(parts) if parts else "not stated in its card"
        tail = "; demonstration model" if self.demonstration else ""
        return f"{self.model}: validated accuracy {measured}{tail}"

    @property
    def lowest(self) -> float | None:
        """The lowest accuracy the card states (the one to plan on)."""
        stated = [a for a in (self.accuracy, self.external_accuracy) if a is not None]
        return min(stated) if stated else None

    def brief(self) -> str:
        """Beside a confidence: "validated accuracy 0.12, demonstration model"."""
        acc = "not stated" if self.lowest is None else f"{self.lowest:.2f}"
        return f"validated accuracy {acc}" + (", demonstration model" if self.demonstration else "")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "accuracy": self.accuracy, "folds": self.folds,
                "external_accuracy": self.external_accuracy, "n_external": self.n_external,
                "demonstration": self.demonstration, "floor": DEMONSTRATION_FLOOR,
                "min_external_images": MIN_EXTERNAL_IMAGES, "text": self.text()}


def validation_of(card: ModelCard) -> Validation:
    """The validation a card states (missing figures stay None)."""
    metrics = card.metrics or {}
    cv = _by_image(metrics.get("cross_validation"))
    ext = _by_image(metrics.get("external"))
    folds = metrics.get("cross_validation", {}).get("k") if isinstance(
        metrics.get("cross_validation"), dict) else None
    n_ext = ext.get("n") if ext else None
    return Validation(
        model=card.name or card.architecture,
        accuracy=_number(cv.get("accuracy")) if cv else None,
        folds=int(folds) if isinstance(folds, int | float) else None,
        external_accuracy=_number(ext.get("accuracy")) if ext else None,
        n_external=int(n_ext) if isinstance(n_ext, int | float) else None,
    )


def _by_image(section: Any) -> dict[str, Any]:
    """A metrics section; image-level figures where it splits them by image and tile."""
    if not isinstance(section, dict):
        return {}
    image = section.get("image")
    return image if isinstance(image, dict) else section


def _number(value: Any) -> float | None:
    """An accuracy written as a number or as ``{"mean": ...}``."""
    if isinstance(value, dict):
        value = value.get("mean")
    return float(value) if isinstance(value, int | float) else None
