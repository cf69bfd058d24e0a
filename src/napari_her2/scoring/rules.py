"""Slide HER2 score from tile results, by the ASCO/CAP guideline rules, with its confidence.

The guideline rule is the default, transparent way from tiles to a slide score:

* breast (ASCO/CAP 2018, reaffirmed 2023), over tumour tiles: 3+ if more than 10% of them are
  3+; else 2+ if more than 10% are >= 2+; else 1+ if more than 10% are >= 1+; else 0. A 0 is
  reported as "0 (null)" or "0 with faint staining (<=10%)", since 0 vs 1+ (HER2-low) now
  changes treatment;
* gastric / gastro-oesophageal resection: the same cascade and cut-off (the tile classes
  already count complete or basolateral/lateral membranes);
* gastric biopsy: a cluster of >= 5 stained tumour cells counts regardless of percentage; with
  tiles, the slide takes the highest class k that at least ``min_cluster_tiles`` tumour tiles
  reach (class >= k).

The call and its confidence are one computation (:mod:`.modal`): the tiles are read again
together (one shared draw places every tile within its class probabilities, see
:func:`_sample_counts`), the rule is applied to every resampling, and the call is the score the
most resamplings give (the modal outcome), its confidence that score's share. A share below
one half makes the call *borderline* between the two most frequent scores. The class
fractions are those of the tiles as called (arg-max), with the 95% range of the resampled
fractions widened to include them. Hand-edited label images have no probabilities, so their
resamplings are a bootstrap over tiles.

Learned slide aggregators (WHSPN over the fraction vector, Monte-Carlo MIL over bags of tile
embeddings) need a model and live with the models; they plug in beside :func:`score_tiles`
by returning a :class:`SlideScore` from :class:`TileResults` (see :class:`SlideScorer`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..classes import HER2_SCORES, LABEL_NAMES, LABEL_VALUES, UNREADABLE, canonical_class
from ..tiles.results import TileResults
from .modal import modal_call, pair_names

logger = logging.getLogger(__name__)

ORGANS = ("breast", "gastric")
SPECIMENS = ("resection", "biopsy")
CATEGORIES = {"0": "negative", "1+": "negative", "2+": "equivocal", "3+": "positive"}

#: index of the "not tumour" outcome (non-tumour, artefact) in sampled outcomes 0..4
_OTHER = len(HER2_SCORES)
#: random draws per chunk when sampling tile classes (bounds memory on huge slides)
_DRAWS_PER_CHUNK = 4_000_000


@dataclass(frozen=True)
class RuleParams:
    """Thresholds of the guideline rules and of the confidence estimate."""

    #: a class counts when its fraction of tumour tiles is strictly greater than this (10%)
    cutoff: float = 0.10
    #: gastric biopsy: tumour tiles a class must reach to stand for a >= 5-cell cluster
    min_cluster_tiles: int = 1
    #: coverage of the class-fraction intervals
    interval: float = 0.95

    def __post_init__(self) -> None:
        if not 0 <= self.cutoff < 1:
            raise ValueError("cutoff must be in [0, 1)")
        if self.min_cluster_tiles < 1:
            raise ValueError("min_cluster_tiles must be >= 1")
        if not 0 < self.interval < 1:
            raise ValueError("interval must be in (0, 1)")


@dataclass(frozen=True)
class ScoringRule:
    """One guideline rule: which cascade, and the name reports give it."""

    organ: str
    specimen: str
    method: str
    params: RuleParams = field(default_factory=RuleParams)

    @property
    def cluster_rule(self) -> bool:
        """True for gastric biopsies: any cluster counts, whatever its percentage."""
        return self.organ == "gastric" and self.specimen == "biopsy"

    def apply(self, counts: np.ndarray) -> np.ndarray:
        """Score index (0..3, -1 without tumour tiles) of tumour-tile counts (..., 4)."""
        counts = np.asarray(counts)
        at_least = np.cumsum(counts[..., ::-1], axis=-1)[..., ::-1]  # tiles with class >= k
        n_tumour = at_least[..., 0]
        if self.cluster_rule:
            reached = at_least[..., 1:] >= self.params.min_cluster_tiles
        else:
            frac = at_least[..., 1:] / np.maximum(n_tumour, 1)[..., None]
            reached = frac > self.params.cutoff
        k = np.arange(1, len(HER2_SCORES))
        call = np.max(np.where(reached, k, 0), axis=-1)
        return np.where(n_tumour > 0, call, -1)


def get_rule(organ: str = "breast", specimen: str = "resection",
             params: RuleParams | None = None) -> ScoringRule:
    """The guideline rule for an organ and specimen type."""
    organ, specimen = organ.lower().strip(), specimen.lower().strip()
    if organ not in ORGANS:
        raise ValueError(f"unknown organ {organ!r}; expected one of {', '.join(ORGANS)}")
    if specimen not in SPECIMENS:
        raise ValueError(f"unknown specimen {specimen!r}; expected one of {', '.join(SPECIMENS)}")
    method = ("asco-cap-breast-2023" if organ == "breast"
              else f"asco-cap-gastric-{specimen}-2016")
    return ScoringRule(organ, specimen, method, params or RuleParams())


@dataclass(frozen=True)
class Her2LowEvidence:
    """For a slide called 0 or 1+: how close it is to the 0 / 1+ (HER2-low) boundary.

    p_at_least_1plus: fraction of samples in which the slide scores >= 1+.
    faint_fraction: fraction of tumour tiles with any membrane staining (>= 1+).
    subcategory: "0 (null)", "0 with faint staining (<=10%)" or "1+ (HER2-low)".
    """

    p_at_least_1plus: float
    faint_fraction: float
    subcategory: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "p_at_least_1plus": self.p_at_least_1plus,
            "faint_fraction": self.faint_fraction,
            "subcategory": self.subcategory,
        }


@dataclass(frozen=True)
class SlideScore:
    """The slide call and the evidence behind it.

    score: "0".."3+": the score most resamplings give (the modal outcome); None when no
        tile is classed as tumour.
    category: "negative" (0, 1+), "equivocal" (2+, reflex ISH) or "positive" (3+) of score.
    class_fractions: fraction of tumour tiles in each class "0".."3+", as called (arg-max).
    class_fraction_intervals: (low, high) 95% range of each fraction over the resamplings,
        widened to include the as-called fraction (so it always contains it).
    confidence: share of the resamplings (with a tumour tile) that give ``score``.
    borderline: (low, high) the two most frequent scores when that share is below one half
        (or another score is as frequent); None otherwise.
    score_shares: share of the resamplings giving each score ({} without resamplings).
    as_called: what the rule gives the tiles' arg-max classes alone (evidence only).
    sampling: "tile-probabilities" (Monte-Carlo readings of the tile classes) or "bootstrap"
        (tiles).
    """

    score: str | None
    category: str | None
    class_fractions: dict[str, float]
    class_fraction_intervals: dict[str, tuple[float, float]]
    n_tiles: int
    n_tumour_tiles: int
    n_unreadable: int
    confidence: float | None
    her2_low: Her2LowEvidence | None
    method: str
    organ: str
    specimen: str
    sampling: str
    n_samples: int
    seed: int
    cutoff: float
    borderline: tuple[str, str] | None = None
    score_shares: dict[str, float] = field(default_factory=dict)
    as_called: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (used by reports and the score panel)."""
        return {
            "score": self.score,
            "category": self.category,
            **tile_counts_dict(self),
            "confidence": self.confidence,
            "borderline": None if self.borderline is None else list(self.borderline),
            "score_shares": dict(self.score_shares),
            "as_called": self.as_called,
            "her2_low": None if self.her2_low is None else self.her2_low.to_dict(),
            "method": self.method,
            "organ": self.organ,
            "specimen": self.specimen,
            "sampling": self.sampling,
            "n_samples": self.n_samples,
            "seed": self.seed,
            "cutoff": self.cutoff,
        }


def tile_counts_dict(x: Any) -> dict[str, Any]:
    """The fractions, their intervals and the tile counts of a score or its evidence, as JSON."""
    return {
        "class_fractions": dict(x.class_fractions),
        "class_fraction_intervals": {k: list(v) for k, v in x.class_fraction_intervals.items()},
        "n_tiles": x.n_tiles,
        "n_tumour_tiles": x.n_tumour_tiles,
        "n_unreadable": x.n_unreadable,
    }


class SlideScorer(Protocol):
    """Anything that turns tile results into a slide score (guideline rule, WHSPN, MIL)."""

    def __call__(self, results: TileResults) -> SlideScore: ...


# --------------------------------------------------------------------------- outcomes


def _outcome_columns(classes: tuple[str, ...]) -> np.ndarray:
    """For each model class, its outcome index: 0..3 for HER2 scores, 4 for anything else."""
    canon = [canonical_class(c) for c in classes]
    return np.array([HER2_SCORES.index(c) if c in HER2_SCORES else _OTHER for c in canon])


def _outcome_probs(results: TileResults) -> np.ndarray:
    """(N, 5) probabilities of outcomes 0, 1+, 2+, 3+, other of the readable tiles."""
    probs = np.nan_to_num(results.probs[results.readable].astype(np.float64), nan=0.0)
    out = np.zeros((probs.shape[0], _OTHER + 1))
    np.add.at(out.T, _outcome_columns(results.classes), probs.T)
    total = out.sum(axis=1, keepdims=True)
    out[total[:, 0] <= 0, _OTHER] = 1.0
    return out / np.maximum(out.sum(axis=1, keepdims=True), 1e-12)


def _hard_outcomes(results: TileResults) -> np.ndarray:
    """Outcome index of each readable tile's arg-max class (what the tile layer shows)."""
    idx = results.predicted_index()
    return _outcome_columns(results.classes)[idx[idx >= 0]]


def _counts(outcomes: np.ndarray) -> np.ndarray:
    """Counts (..., 5) of outcome indices (..., n)."""
    return np.stack([(outcomes == k).sum(axis=-1) for k in range(_OTHER + 1)], axis=-1)


def tumour_fractions(results: TileResults) -> tuple[np.ndarray, int]:
    """(4,) fractions of 0 / 1+ / 2+ / 3+ among tumour tiles, and the tumour tile count,
    counted as the guideline rule counts them (arg-max class of each readable tile)."""
    counts = _counts(_hard_outcomes(results))
    return _fractions(counts).astype(np.float64), int(counts[:_OTHER].sum())


def _sample_counts(probs: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Counts (S, 5) of outcomes when the tiles are read again, together.

    Each resampling draws one reading ``u`` ~ U(0, 1) that every tile shares: a tile's class
    is where ``u`` falls in its cumulative class probabilities given tumour (0, 1+, 2+, 3+);
    a low ``u`` reads every tile low, a high ``u`` high, as a stricter reader reads all of a
    slide lower. A tile model's errors on one slide (stain, scanner, tissue) are shared by
    its tiles: independent draws would average its doubt away, and near-uniform tiles would
    give a confident call. Whether a tile is tumour at all is drawn per tile.
    """
    n = probs.shape[0]
    p_other = probs[:, _OTHER].astype(np.float32)
    p_tumour = np.maximum(probs[:, :_OTHER].sum(axis=1, keepdims=True), 1e-12)
    cum = (np.cumsum(probs[:, : _OTHER - 1], axis=1) / p_tumour).astype(np.float32)
    chunk = max(1, _DRAWS_PER_CHUNK // max(n, 1))
    parts = []
    for start in range(0, n_samples, chunk):
        m = min(chunk, n_samples - start)
        u = rng.random(m, dtype=np.float32)
        # not tumour when a tile's own draw falls below its probability of not being tumour
        tumour = rng.random((m, n), dtype=np.float32) >= p_other
        # a tile's class exceeds k when the shared reading is at least P(class <= k | tumour)
        above = [np.count_nonzero(tumour & (u[:, None] >= cum[:, k]), axis=1)
                 for k in range(cum.shape[1])]
        at_least = np.stack([np.count_nonzero(tumour, axis=1), *above], axis=1)
        counts = at_least - np.concatenate([at_least[:, 1:], np.zeros_like(at_least[:, :1])],
                                           axis=1)
        parts.append(np.concatenate([counts, (n - at_least[:, :1])], axis=1))
    return np.concatenate(parts) if parts else np.zeros((0, _OTHER + 1), np.int64)


def _bootstrap_counts(outcomes: np.ndarray, n_samples: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Counts (S, 5) of outcomes in bootstrap resamples (with replacement) of the tiles.

    Resampling n tiles with replacement gives multinomial(n, observed proportions) counts.
    """
    n = outcomes.shape[0]
    if n == 0:
        return np.zeros((n_samples, _OTHER + 1), np.int64)
    return rng.multinomial(n, _counts(outcomes) / n, size=n_samples)


# --------------------------------------------------------------------------- summary


def _fractions(counts: np.ndarray) -> np.ndarray:
    """Fractions (..., 4) of the tumour classes among tumour tiles (0 without tumour)."""
    tumour = counts[..., :_OTHER]
    return tumour / np.maximum(tumour.sum(axis=-1, keepdims=True), 1)


def _intervals(samples: np.ndarray, level: float,
               shown: np.ndarray) -> dict[str, tuple[float, float]]:
    """The ``level`` range of each class fraction over the resamplings, widened to include
    the fraction ``shown`` (4,) so that what is shown always lies inside its range."""
    if samples.shape[0] == 0:
        return {s: (float(shown[i]), float(shown[i])) for i, s in enumerate(HER2_SCORES)}
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(_fractions(samples), [tail, 100 - tail], axis=0)
    lo, hi = np.minimum(lo, shown), np.maximum(hi, shown)
    return {s: (float(lo[i]), float(hi[i])) for i, s in enumerate(HER2_SCORES)}


def _her2_low(call: int, observed: np.ndarray, sample_calls: np.ndarray) -> Her2LowEvidence | None:
    """0 / 1+ boundary evidence for a slide called 0 or 1+; None otherwise."""
    if call not in (0, 1):
        return None
    faint = float(_fractions(observed)[1:].sum())
    scored = sample_calls[sample_calls >= 0]
    p_low = float(np.mean(scored >= 1)) if scored.size else float(call >= 1)
    if call == 1:
        sub = "1+ (HER2-low)"
    elif faint > 0:
        sub = "0 with faint staining (<=10%)"
    else:
        sub = "0 (null)"
    return Her2LowEvidence(p_low, faint, sub)


@dataclass(frozen=True)
class _Outcome:
    """The call of a set of resamplings: score index (-1: none), confidence, borderline
    pair and the share of each score (empty without scored resamplings)."""

    call: int
    confidence: float | None
    borderline: tuple[str, str] | None
    shares: dict[str, float]


def _modal_outcome(as_called: int, sample_calls: np.ndarray) -> _Outcome:
    """The modal score of the resamplings that have a tumour tile (ties go to the score as
    called); without tumour tiles as called, or without scored resamplings, the as-called
    score and no confidence."""
    scored = sample_calls[sample_calls >= 0]
    if as_called < 0 or scored.size == 0:
        return _Outcome(as_called, None, None, {})
    shares = np.bincount(scored, minlength=len(HER2_SCORES)) / scored.size
    modal = modal_call(shares, preferred=as_called)
    named = {s: float(shares[i]) for i, s in enumerate(HER2_SCORES)}
    return _Outcome(modal.score, modal.share, pair_names(modal.borderline), named)


def summarise_counts(observed: np.ndarray, samples: np.ndarray, rule: ScoringRule, *,
                     n_tiles: int, n_unreadable: int, sampling: str, seed: int) -> SlideScore:
    """A SlideScore from observed outcome counts (5,) and sampled counts (S, 5): counts of
    tiles (the rule over tiles) or of cells (``scoring.cells``)."""
    as_called = int(rule.apply(observed[:_OTHER]))
    sample_calls = rule.apply(samples[:, :_OTHER]) if samples.size else np.zeros(0, int)
    outcome = _modal_outcome(as_called, sample_calls)
    score = HER2_SCORES[outcome.call] if outcome.call >= 0 else None
    fractions = _fractions(observed)
    return SlideScore(
        score=score,
        category=CATEGORIES[score] if score else None,
        class_fractions={s: float(fractions[i]) for i, s in enumerate(HER2_SCORES)},
        class_fraction_intervals=_intervals(samples, rule.params.interval, fractions),
        n_tiles=n_tiles,
        n_tumour_tiles=int(observed[:_OTHER].sum()),
        n_unreadable=n_unreadable,
        confidence=outcome.confidence,
        her2_low=_her2_low(outcome.call, observed, sample_calls),
        method=rule.method,
        organ=rule.organ,
        specimen=rule.specimen,
        sampling=sampling,
        n_samples=int(samples.shape[0]),
        seed=seed,
        cutoff=rule.params.cutoff,
        borderline=outcome.borderline,
        score_shares=outcome.shares,
        as_called=HER2_SCORES[as_called] if as_called >= 0 else None,
    )


# --------------------------------------------------------------------------- entry points


def score_tiles(results: TileResults, organ: str = "breast", specimen: str = "resection", *,
                n_samples: int = 1000, seed: int = 0,
                params: RuleParams | None = None) -> SlideScore:
    """Slide score of (possibly partial) tile results by the guideline rule.

    ``n_samples`` Monte-Carlo readings of the tiles (one shared draw places every tile's
    class within its probabilities; seeded: same inputs, same output) each give a score;
    the call is the most frequent one, its confidence that score's share, borderline below
    one half. The class fractions count each readable tile's arg-max class (as the tile
    layer shows them).
    """
    rule = get_rule(organ, specimen, params)
    probs = _outcome_probs(results)
    observed = _counts(_hard_outcomes(results))
    rng = np.random.default_rng(seed)
    samples = (_sample_counts(probs, n_samples, rng) if len(probs)
               else np.zeros((0, _OTHER + 1), np.int64))
    n_unreadable = int((~results.readable).sum())
    logger.debug("scored %d tiles (%d unreadable) by %s", len(results), n_unreadable,
                 rule.method)
    return summarise_counts(observed, samples, rule, n_tiles=len(results),
                      n_unreadable=n_unreadable, sampling="tile-probabilities", seed=seed)


def _label_outcomes(label_image: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Outcome index (0..4) of every readable labelled tile, the tile count, unreadable count."""
    values = np.asarray(label_image).ravel()
    values = values[values != 0]
    unknown = sorted(set(np.unique(values).tolist()) - set(LABEL_NAMES))
    if unknown:
        raise ValueError(f"label image has values {unknown} that are no tile class")
    table = np.full(max(LABEL_NAMES) + 1, _OTHER, np.int64)
    for value, name in LABEL_NAMES.items():
        if name in HER2_SCORES:
            table[value] = HER2_SCORES.index(name)
    unreadable = values == LABEL_VALUES[UNREADABLE]
    return table[values[~unreadable]], int(values.size), int(unreadable.sum())


def score_labels(label_image: np.ndarray, organ: str = "breast", specimen: str = "resection",
                 *, n_samples: int = 1000, seed: int = 0,
                 params: RuleParams | None = None) -> SlideScore:
    """Slide score of a tile label image (``classes.LABEL_VALUES``), e.g. corrected by hand.

    Labels are hard, so the resamplings behind the call and its confidence are a seeded
    bootstrap over the labelled tiles (the same modal rule as :func:`score_tiles`).
    """
    rule = get_rule(organ, specimen, params)
    outcomes, n_tiles, n_unreadable = _label_outcomes(label_image)
    rng = np.random.default_rng(seed)
    samples = (_bootstrap_counts(outcomes, n_samples, rng) if outcomes.size
               else np.zeros((0, _OTHER + 1), np.int64))
    return summarise_counts(_counts(outcomes), samples, rule, n_tiles=n_tiles,
                      n_unreadable=n_unreadable, sampling="bootstrap", seed=seed)


def rule_scorer(organ: str = "breast", specimen: str = "resection",
                **kwargs: Any) -> Callable[[TileResults], SlideScore]:
    """A :class:`SlideScorer` that applies the guideline rule with fixed settings."""
    return lambda results: score_tiles(results, organ, specimen, **kwargs)
