"""One slide-call type for every way of calling a slide, and the reasons for no call.

The guideline rule, WHSPN and attention MIL all return a :class:`SlideCall`: the score, its
3-class category, how sure it is, the method that made it and the :class:`Evidence` behind
it. The report, the CLI line and the widget panel render this one object, so they never
disagree (the 0-vs-1+ comment is always about the call that was made).

The score and the confidence come from one computation (:mod:`.modal`): the score is the
most frequent outcome (of the rule's resamplings, or the most probable class of a slide
model) and the confidence its share. Below one half the call is **borderline** between the
two most frequent scores, and every rendering says so ("HER2 borderline 0 / 1+: review").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..classes import HER2_SCORES, canonical_class
from ..models.validation import Validation
from .modal import modal_of_named, pair_names
from .rules import CATEGORIES, Her2LowEvidence, SlideScore, tile_counts_dict

#: how each 3-class category reads in one line
CATEGORY_TEXT = {
    "negative": "negative",
    "equivocal": "equivocal: reflex ISH",
    "positive": "positive",
}


class NoCallReason(str, enum.Enum):
    """Why a slide got no HER2 score."""

    NO_TISSUE = "no tissue found"
    NO_TUMOUR = "no tumour found"
    STAIN_CHECK = "stain check failed"
    MISSING_MPP = "slide µm/px missing"
    UNREADABLE = "slide unreadable"


@dataclass(frozen=True, eq=False)
class Evidence:
    """What a call rests on.

    class_fractions / class_fraction_intervals: tumour-tile fractions per class "0".."3+",
    counting each tile's called (arg-max) class, and a range for each: the 95% range of the
    fraction over the guideline rule's resamplings (the tiles read again together, see
    :func:`.rules._sample_counts`; a bootstrap over tiles after hand edits), **widened to
    include the fraction shown**, so a shown fraction always lies inside its range (tiles all
    60% 2+ / 40% 3+: 3+ is 0% as called, and all tiles are 3+ in 40% of the resamplings, so
    its range is 0-100%).
    score_shares: share of each score in the computation that made the call: the rule's
    resamplings (rule call) or the model's class probabilities (slide model).
    n_tiles / n_tumour_tiles / n_unreadable: tiles scored, tumour tiles, unreadable tiles.
    her2_low: the 2023 0-vs-1+ comment for a call of 0 or 1+ (None otherwise).
    probs / prob_intervals: a slide model's class probabilities (MIL: with 95% intervals).
    attention: (N,) per-tile attention of a MIL model in the tile order of the results.
    rule: the guideline rule's own output (kept when a slide model made the call).
    """

    class_fractions: dict[str, float]
    class_fraction_intervals: dict[str, tuple[float, float]]
    n_tiles: int
    n_tumour_tiles: int
    n_unreadable: int
    her2_low: Her2LowEvidence | None = None
    probs: dict[str, float] | None = None
    prob_intervals: dict[str, tuple[float, float]] | None = None
    attention: np.ndarray | None = field(default=None, repr=False)
    rule: SlideScore | None = field(default=None, repr=False)
    score_shares: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **tile_counts_dict(self),
            "score_shares": self.score_shares,
            "her2_low": None if self.her2_low is None else self.her2_low.to_dict(),
            "probs": self.probs,
            "prob_intervals": None if self.prob_intervals is None else {
                k: list(v) for k, v in self.prob_intervals.items()},
            "rule": None if self.rule is None else self.rule.to_dict(),
        }


@dataclass(frozen=True, eq=False)
class SlideCall:
    """The slide's HER2 call, or no call with its reason.

    score: "0".."3+" or None: the modal outcome (the score most of the rule's resamplings
    give, or a slide model's most probable class); category: negative / equivocal / positive
    of that score, or None; confidence: the score's share of those resamplings (rule) or its
    probability (slide model); borderline: (low, high) the two most frequent scores when the
    confidence is below one half (or another score is as frequent), else None; method: the
    rule or model that made the call; partial: True while
    scoring runs or after it was cancelled (the call covers only the tiles scored so far);
    validation: what the card of the learned model behind the call says of its accuracy
    (None for the weight-free scorer under the guideline rule).
    """

    score: str | None
    category: str | None
    confidence: float | None
    method: str
    evidence: Evidence
    no_call: NoCallReason | None = None
    no_call_detail: str = ""
    partial: bool = False
    validation: Validation | None = None
    borderline: tuple[str, str] | None = None

    @property
    def has_score(self) -> bool:
        return self.score is not None

    def category_text(self) -> str:
        """The category line: "equivocal: reflex ISH"; for a borderline call "negative,
        borderline: review", or "negative / equivocal: review" when the pair straddles two
        categories; "" without a score."""
        if self.score is None:
            return ""
        if self.borderline is None:
            return CATEGORY_TEXT.get(self.category or "", self.category or "")
        straddle = _straddled(self.borderline)
        return f"{straddle}: review" if straddle else f"{self.category}, borderline: review"

    def score_text(self) -> str:
        """The score as shown large: "2+", or "0 / 1+" for a borderline call."""
        if self.score is None:
            return "no call"
        return " / ".join(self.borderline) if self.borderline else self.score

    def borderline_shares(self) -> str:
        """"0 in 48% of resamplings, 1+ in 45%" (rule) or "P(0) 0.48, P(1+) 0.45" (slide
        model) for a borderline call; "" otherwise. When the other two scores together are
        at least as frequent as the less frequent of the pair, their share follows ("2+ in
        27% of resamplings, 3+ in 28%, the other scores in 45%"): the pair is then no lean."""
        if self.borderline is None:
            return ""
        shares = self.evidence.score_shares or {}
        lo, hi = ((s, float(shares.get(s, 0.0))) for s in self.borderline)
        rest = max(0.0, 1.0 - lo[1] - hi[1])
        if self.evidence.probs is not None:
            text = f"P({lo[0]}) {lo[1]:.2f}, P({hi[0]}) {hi[1]:.2f}"
            return text + (f", P(other) {rest:.2f}" if rest >= min(lo[1], hi[1]) else "")
        text = f"{lo[0]} in {100 * lo[1]:.0f}% of resamplings, {hi[0]} in {100 * hi[1]:.0f}%"
        return text + (f", the other scores in {100 * rest:.0f}%"
                       if rest >= min(lo[1], hi[1]) else "")

    def as_partial(self, partial: bool = True) -> SlideCall:
        return replace(self, partial=partial)

    def with_validation(self, validation: Validation | None) -> SlideCall:
        return replace(self, validation=validation)

    def without_score(self, reason: NoCallReason, detail: str = "") -> SlideCall:
        """This call turned into a no-call (its evidence kept)."""
        return replace(self, score=None, category=None, confidence=None, no_call=reason,
                       no_call_detail=detail, borderline=None)

    def headline(self) -> str:
        """One line: "HER2 2+ (equivocal), confidence 0.87 by asco-cap-...", "HER2 borderline
        0 / 1+: review (0 in 48% of resamplings, 1+ in 45%) by asco-cap-..." (a learned model
        adds its validated accuracy) or "no HER2 score: no tumour found (...)"."""
        if self.score is None:
            reason = self.no_call.value if self.no_call else "no call"
            detail = f" ({self.no_call_detail})" if self.no_call_detail else ""
            return f"no HER2 score: {reason}{detail}"
        brief = self.validation.brief() if self.validation is not None else ""
        part = " [partial]" if self.partial else ""
        if self.borderline is not None:
            straddle = _straddled(self.borderline)
            cats = f" ({straddle})" if straddle else ""
            shares = self.borderline_shares() + (f"; {brief}" if brief else "")
            return (f"HER2 borderline {self.score_text()}{cats}: review ({shares}) "
                    f"by {self.method}{part}")
        conf = f", confidence {self.confidence:.2f}" if self.confidence is not None else ""
        valid = f" ({brief})" if brief else ""
        return f"HER2 {self.score} ({self.category}){conf}{valid} by {self.method}{part}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "category": self.category,
            "confidence": self.confidence,
            "borderline": None if self.borderline is None else list(self.borderline),
            "method": self.method,
            "no_call": None if self.no_call is None else self.no_call.value,
            "no_call_detail": self.no_call_detail,
            "partial": self.partial,
            "validation": None if self.validation is None else self.validation.to_dict(),
            "evidence": self.evidence.to_dict(),
        }


def _straddled(pair: tuple[str, str]) -> str:
    """"negative / equivocal" when a borderline pair spans two categories, else ""."""
    low, high = (CATEGORIES[s] for s in pair)
    return f"{low} / {high}" if low != high else ""


def evidence_of(rule: SlideScore) -> Evidence:
    """The evidence a guideline-rule score gives."""
    return Evidence(
        class_fractions=dict(rule.class_fractions),
        class_fraction_intervals=dict(rule.class_fraction_intervals),
        n_tiles=rule.n_tiles,
        n_tumour_tiles=rule.n_tumour_tiles,
        n_unreadable=rule.n_unreadable,
        her2_low=rule.her2_low,
        rule=rule,
        score_shares=dict(rule.score_shares) or None,
    )


def call_from_rule(rule: SlideScore) -> SlideCall:
    """The guideline rule's call; no tumour tile is a no-call."""
    call = SlideCall(rule.score, rule.category, rule.confidence, rule.method, evidence_of(rule),
                     borderline=rule.borderline)
    if rule.score is None:
        return call.without_score(
            NoCallReason.NO_TUMOUR,
            f"none of {rule.n_tiles} tissue tiles was classed as tumour" if rule.n_tiles
            else "no tile was scored")
    return call


def _model_her2_low(score: str, probs: dict[str, float], rule: SlideScore
                    ) -> Her2LowEvidence | None:
    """The 0-vs-1+ comment on a slide model's call of 0 or 1+ (None above 1+)."""
    if score not in ("0", "1+"):
        return None
    p_low = float(sum(p for c, p in probs.items() if c in ("1+", "2+", "3+")))
    faint = rule.her2_low.faint_fraction if rule.her2_low is not None else float(
        sum(v for k, v in rule.class_fractions.items() if k != "0"))
    if score == "1+":
        sub = "1+ (HER2-low)"
    else:
        sub = "0 with faint staining (<=10%)" if faint > 0 else "0 (null)"
    return Her2LowEvidence(p_low, faint, sub)


def call_from_model(score: str, probs: dict[str, float], method: str, rule: SlideScore, *,
                    intervals: dict[str, tuple[float, float]] | None = None,
                    attention: np.ndarray | None = None) -> SlideCall:
    """A slide model's call by the same modal rule: its most probable class (``score``
    breaks ties), confidence that probability, borderline between the two most probable
    classes when it is below one half. The rule's fractions are kept as evidence and the
    0-vs-1+ comment describes the model's own call."""
    shares = {s: 0.0 for s in HER2_SCORES}
    for name, p in probs.items():
        shares[canonical_class(name)] = shares.get(canonical_class(name), 0.0) + float(p)
    modal = modal_of_named(shares, preferred=canonical_class(score))
    score = HER2_SCORES[modal.score]
    evidence = replace(evidence_of(rule), her2_low=_model_her2_low(score, shares, rule),
                       probs=dict(probs), prob_intervals=intervals, attention=attention,
                       score_shares=shares)
    return SlideCall(score, CATEGORIES[score], modal.share, method, evidence,
                     borderline=pair_names(modal.borderline))


def no_call(reason: NoCallReason, detail: str = "", method: str = "") -> SlideCall:
    """A call with no score and no evidence (the slide could not be scored at all)."""
    empty = Evidence({}, {}, 0, 0, 0)
    return SlideCall(None, None, None, method, empty, reason, detail)
