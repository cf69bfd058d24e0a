"""Running a scorer over a slide, the stage above scoring.

- :mod:`.inference`: the Qt-free generator that reads tiles ahead in threads, calls the
  predictor batch by batch and yields a :class:`ScoringUpdate` after each;
- :mod:`.pipeline`: ``prepare`` -> ``iter_score_slide`` -> :class:`SlideReport`
  (``score_slide`` drains it for scripts).

It is a package of its own because scoring imports the per-tile results the runner fills:
one package for both would import itself in a circle.
"""

from __future__ import annotations

from .inference import ScoringUpdate, Timings, iter_scoring, read_tile, run_scoring
from .pipeline import Prepared, SlideReport, iter_score_slide, prepare, score_slide, write_outputs

__all__ = [
    "Prepared",
    "ScoringUpdate",
    "SlideReport",
    "Timings",
    "iter_score_slide",
    "iter_scoring",
    "prepare",
    "read_tile",
    "run_scoring",
    "score_slide",
    "write_outputs",
]
