"""Tissue microarrays: find the cores and name them (:mod:`.dearray`), then score each as its
own region (:mod:`.cores`)."""

from __future__ import annotations

from .cores import CoreScore, TmaReport, iter_score_tma, score_tma
from .dearray import Core, TmaError, TmaGrid, core_id, find_cores, parse_grid

__all__ = [
    "Core",
    "CoreScore",
    "TmaError",
    "TmaGrid",
    "TmaReport",
    "core_id",
    "find_cores",
    "iter_score_tma",
    "parse_grid",
    "score_tma",
]
