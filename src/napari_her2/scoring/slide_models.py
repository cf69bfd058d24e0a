"""Learned slide scores from tile results: WHSPN (seed 001) and Monte-Carlo MIL (seed 002).

Two of the three interchangeable ways from tiles to a slide score need a trained model; the
third, the guideline rule, lives in :mod:`napari_her2.scoring.rules`. Both start from the same
:class:`~napari_her2.tiles.results.TileResults` and give a :class:`SlideModelResult`:

* WHSPN (registry kind ``"slide"``): the 0 / 1+ / 2+ / 3+ fractions of the tumour tiles,
  counted exactly as the guideline rule counts them (arg-max class of every readable tile;
  non-tumour, artefact and unreadable tiles left out), go through an MLP (softmax of its
  logits) or an SVM (a one-hot of its decision).
* Monte-Carlo MIL (registry kind ``"mil"``): ``n_bags`` bags of ``min(bag_size, N)`` tile
  embeddings are drawn, each without replacement, from the N readable tiles with a seeded
  generator (bags are independent, so one tile can be in many bags). The slide's class
  probabilities are the mean of the bag probabilities, with a 95% percentile interval over
  the bags. The per-tile heatmap follows seed 002, Algorithm 1: in every bag, each sampled
  tile gets (the bag's probability of the slide's predicted class) x (its attention weight)
  x (the bag size, so that uniform attention gives 1), averaged over the bags that held it.

:func:`load_slide_model` loads a slide-level or MIL checkpoint and refuses tile models.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..classes import HER2_SCORES, canonical_class
from ..errors import CheckpointError, Her2Error, ModelNotFoundError
from ..models.calibration import softmax_at
from ..models.card import ModelCard
from ..models.checkpoint import load_checkpoint, read_card
from ..models.predictors import resolve_checkpoint, resolve_device
from ..models.registry import model_spec
from ..models.whspn import WHSPNSVM
from ..tiles.results import TileResults
from .call import SlideCall, call_from_model
from .rules import CATEGORIES, SlideScore, tumour_fractions

logger = logging.getLogger(__name__)

#: bags per forward pass of a MIL model (bounds memory: bags x bag size x embedding size)
BAGS_PER_BATCH = 64
#: coverage of the Monte-Carlo interval of the class probabilities
INTERVAL = 0.95
#: registry kinds :func:`load_slide_model` accepts
SLIDE_KINDS = ("slide", "mil")


@dataclass(frozen=True, eq=False)
class SlideModelResult:
    """A slide score from a learned slide-level model.

    method: "whspn-mlp", "whspn-svm" or "abmil-monte-carlo".
    name / sha256: the checkpoint's card name and weights hash.
    classes: the model's slide classes (canonical HER2 scores "0".."3+").
    probs: (C,) mean class probabilities (for the SVM, a one-hot of its decision).
    interval: (C, 2) 95% interval of the class probabilities over the bags; None for WHSPN.
    score / category: most probable class ("0".."3+") and its 3-class collapse.
    attention: (N,) per-tile heatmap values in the tile order of the TileResults (NaN for
        tiles never sampled or unreadable); None for WHSPN.
    n_bags / bag_size / seed: Monte-Carlo settings (bag_size as used: at most N); None for
        WHSPN.
    n_instances: tiles the model saw: tumour tiles (WHSPN) or readable tiles (MIL).
    Arrays are read-only copies; results compare by identity.
    """

    method: str
    name: str
    sha256: str
    classes: tuple[str, ...]
    probs: np.ndarray
    interval: np.ndarray | None
    score: str
    category: str
    attention: np.ndarray | None
    n_bags: int | None
    bag_size: int | None
    seed: int | None
    n_instances: int = 0

    def __post_init__(self) -> None:
        for name in ("probs", "interval", "attention"):
            value = getattr(self, name)
            if value is not None:
                value = np.array(value, np.float64)
                value.flags.writeable = False
                object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for reports (the per-tile attention is left out)."""
        interval = None
        if self.interval is not None:
            interval = {c: [float(lo), float(hi)] for c, (lo, hi)
                        in zip(self.classes, self.interval, strict=True)}
        return {
            "method": self.method,
            "model": {"name": self.name, "sha256": self.sha256},
            "classes": list(self.classes),
            "probs": {c: float(p) for c, p in zip(self.classes, self.probs, strict=True)},
            "interval": interval,
            "score": self.score,
            "category": self.category,
            "n_bags": self.n_bags,
            "bag_size": self.bag_size,
            "seed": self.seed,
            "n_instances": self.n_instances,
        }


# --------------------------------------------------------------------------- inputs


def _readable_embeddings(results: TileResults, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the usable tiles in ``results``, their (N, D) float32 embeddings)."""
    if results.embeddings is None:
        raise Her2Error(
            f"{name}: MIL scoring needs tile embeddings, and this tile model gives none; score "
            "the slide with a CNN checkpoint as the tile model, not a weight-free scorer"
        )
    emb = np.asarray(results.embeddings, np.float32)
    ok = np.asarray(results.readable, bool) & np.isfinite(emb).all(axis=1)
    skipped = int(np.count_nonzero(results.readable & ~ok))
    if skipped:
        logger.warning("%s: %d readable tiles have no finite embedding; left out", name, skipped)
    index = np.flatnonzero(ok)
    if index.size == 0:
        raise Her2Error(f"{name}: no readable tile with an embedding; nothing to score")
    return index, emb[index]


def _mil_in_features(model: nn.Module, card: ModelCard) -> int | None:
    """Embedding size a MIL model takes (from the model, else from its card)."""
    size = getattr(model, "in_features", None) or card.arch_args.get("in_features")
    return None if size is None else int(size)


# --------------------------------------------------------------------------- Monte-Carlo


def sample_bags(n: int, n_bags: int, bag_size: int, rng: np.random.Generator) -> np.ndarray:
    """(n_bags, min(bag_size, n)) tile indices; each bag drawn without replacement."""
    k = min(bag_size, n)
    return np.stack([rng.choice(n, size=k, replace=False) for _ in range(n_bags)])


def _bag_forward(model: nn.Module, emb: torch.Tensor, bags: np.ndarray,
                 temperature: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(B, C) bag probabilities (softmax of the logits / ``temperature``, the card's
    calibration) and (B, K) attention weights for bags of embeddings."""
    probs, attn = [], []
    with torch.inference_mode():
        for start in range(0, len(bags), BAGS_PER_BATCH):
            idx = torch.from_numpy(bags[start:start + BAGS_PER_BATCH]).to(emb.device)
            out = model(emb[idx])
            probs.append(softmax_at(out.logits.double(), temperature).cpu().numpy())
            attn.append(out.attention.double().cpu().numpy())
    return np.concatenate(probs), np.concatenate(attn)


def attention_heatmap(bags: np.ndarray, bag_probs: np.ndarray, attention: np.ndarray,
                      cls: int, n: int) -> np.ndarray:
    """(n,) seed 002 Algorithm 1 values: mean over the bags holding a tile of
    p(bag, cls) x attention x bag size; NaN for tiles in no bag."""
    k = bags.shape[1]
    contrib = bag_probs[:, cls, None] * attention * k
    total = np.bincount(bags.ravel(), weights=contrib.ravel(), minlength=n)
    seen = np.bincount(bags.ravel(), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(seen > 0, total / seen, np.nan)


def _interval(bag_probs: np.ndarray) -> np.ndarray:
    tail = 100 * (1 - INTERVAL) / 2
    lo, hi = np.percentile(bag_probs, [tail, 100 - tail], axis=0)
    return np.stack([lo, hi], axis=1)


# --------------------------------------------------------------------------- the model


class SlideModel:
    """A loaded slide-level (WHSPN) or MIL checkpoint that scores :class:`TileResults`.

    model: the network in eval mode on ``device``; card: its model card; kind: "slide"
    or "mil" (registry kind of the architecture).
    """

    def __init__(self, model: nn.Module, card: ModelCard, kind: str,
                 device: str | torch.device = "cpu") -> None:
        if kind not in SLIDE_KINDS:
            raise ValueError(f"kind must be one of {SLIDE_KINDS}, not {kind!r}")
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.card = card
        self.kind = kind

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def sha256(self) -> str:
        return self.card.sha256

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.card.classes)

    @property
    def method(self) -> str:
        """Name of the scoring method in reports."""
        arch = self.card.architecture
        return f"{arch}-monte-carlo" if self.kind == "mil" else arch

    def __repr__(self) -> str:
        return f"SlideModel(name={self.name!r}, method={self.method!r}, device={self.device})"

    def score(self, results: TileResults, *, n_bags: int = 64, bag_size: int = 100,
              seed: int = 0) -> SlideModelResult:
        """Slide score of ``results`` (MIL: ``n_bags`` seeded bags of ``bag_size`` tiles)."""
        if self.kind == "slide":
            return self._score_whspn(results)
        if n_bags < 1 or bag_size < 1:
            raise Her2Error(f"n_bags and bag_size must be >= 1, got {n_bags} and {bag_size}")
        return self._score_mil(results, n_bags, bag_size, seed)

    def call(self, results: TileResults, rule: SlideScore, *, n_bags: int | None = None,
             bag_size: int | None = None, seed: int = 0) -> SlideCall:
        """The slide call of this model, with the guideline rule's output as evidence."""
        kw = {k: v for k, v in (("n_bags", n_bags), ("bag_size", bag_size)) if v is not None}
        m = self.score(results, seed=seed, **kw)
        probs = {c: float(p) for c, p in zip(m.classes, m.probs, strict=True)}
        intervals = None
        if m.interval is not None:
            intervals = {c: (float(lo), float(hi))
                         for c, (lo, hi) in zip(m.classes, m.interval, strict=True)}
        return call_from_model(m.score, probs, self.method, rule, intervals=intervals,
                               attention=m.attention)

    def _result(self, probs: np.ndarray, **fields: Any) -> SlideModelResult:
        score = canonical_class(self.classes[int(np.argmax(probs))])
        return SlideModelResult(method=self.method, name=self.name, sha256=self.sha256,
                                classes=self.classes, probs=probs, score=score,
                                category=CATEGORIES[score], **fields)

    def _score_whspn(self, results: TileResults) -> SlideModelResult:
        fractions, n_tumour = tumour_fractions(results)
        if n_tumour == 0:
            raise Her2Error(f"{self.name}: no tumour tile among {len(results)} tiles; "
                            "WHSPN needs tumour-tile class fractions")
        with torch.inference_mode():
            x = torch.from_numpy(fractions[None]).float().to(self.device)
            out = self.model(x)[0].double().cpu().numpy()
        if isinstance(self.model, WHSPNSVM):
            probs = np.eye(len(out))[int(np.argmax(out))]
        else:
            logits = out / (self.card.temperature or 1.0)  # the card's calibration
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
        logger.debug("%s: fractions %s -> %s", self.name, fractions.round(3), probs.round(3))
        return self._result(probs, interval=None, attention=None, n_bags=None, bag_size=None,
                            seed=None, n_instances=n_tumour)

    def _score_mil(self, results: TileResults, n_bags: int, bag_size: int,
                   seed: int) -> SlideModelResult:
        index, emb = _readable_embeddings(results, self.name)
        expected = _mil_in_features(self.model, self.card)
        if expected is not None and emb.shape[1] != expected:
            raise Her2Error(
                f"{self.name}: the MIL model takes {expected}-dimensional tile embeddings, but "
                f"the tile model gave {emb.shape[1]}-dimensional ones; use the tile model it "
                "was trained with"
            )
        rng = np.random.default_rng(seed)
        bags = sample_bags(len(index), n_bags, bag_size, rng)
        bag_probs, attn = _bag_forward(self.model, torch.from_numpy(emb).to(self.device), bags,
                                       self.card.temperature)
        probs = bag_probs.mean(axis=0)
        cls = int(np.argmax(probs))
        heat = np.full(len(results), np.nan)
        heat[index] = attention_heatmap(bags, bag_probs, attn, cls, len(index))
        logger.debug("%s: %d bags of %d from %d tiles -> %s", self.name, n_bags, bags.shape[1],
                     len(index), probs.round(3))
        return self._result(probs, interval=_interval(bag_probs), attention=heat,
                            n_bags=n_bags, bag_size=int(bags.shape[1]), seed=seed,
                            n_instances=len(index))


# --------------------------------------------------------------------------- loading


def _fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: {problem}")


def _check_card(path: Path, card: ModelCard) -> str:
    """Registry kind of the card's architecture; CheckpointError if it cannot score slides."""
    try:
        kind = model_spec(card.architecture).kind
    except ModelNotFoundError as err:
        raise _fail(path, f"card names an unknown architecture: {err}") from None
    if kind == "tile":
        raise _fail(path, f"{card.architecture!r} is a tile model; use it as --model")
    if kind not in SLIDE_KINDS:
        raise _fail(path, f"{card.architecture!r} is a {kind} model, not a slide-level model")
    other = [c for c in card.classes if canonical_class(c) not in HER2_SCORES]
    if other:
        raise _fail(path, f"slide classes must be HER2 scores 0..3+, card lists {other}")
    return kind


def _check_model(path: Path, model: nn.Module, kind: str) -> None:
    """Refuse MIL models that read tile images through their own backbone."""
    if kind == "mil" and getattr(model, "backbone", None) is not None:
        raise _fail(path, "this MIL model reads tile images through its own backbone; "
                          "Monte-Carlo scoring needs one trained on tile embeddings")
    if kind == "slide":
        size = int(getattr(model, "arch_args", {}).get("in_features", len(HER2_SCORES)))
        if size != len(HER2_SCORES):
            raise _fail(path, f"WHSPN takes the {len(HER2_SCORES)} class fractions, "
                              f"this model takes {size} inputs")


def load_slide_model(path: str | Path, device: str | torch.device = "cpu") -> SlideModel:
    """Load a WHSPN or MIL checkpoint (a path, or a checkpoint name in the models folder).

    Raises :class:`ModelNotFoundError` for an architecture name without weights or an
    unknown name, and :class:`CheckpointError` (one line, naming the file) for a tile model,
    an unsafe or mismatched checkpoint, or one that cannot score tile results.
    """
    file = resolve_checkpoint(path, what="slide model")
    kind = _check_card(file, read_card(file))
    dev = resolve_device(device)
    model, card = load_checkpoint(file, dev)
    _check_model(file, model, kind)
    logger.info("slide model %s (%s) from %s", card.name, card.architecture, file)
    return SlideModel(model, card, kind, dev)
