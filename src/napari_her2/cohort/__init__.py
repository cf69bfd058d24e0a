"""Many slides at once: batch scoring over dask.distributed (:mod:`.batch`), scoring a
labelled folder (:mod:`.evaluate`, its labels from :mod:`.labels`), the agreement figures it
reports (:mod:`.metrics`), the calibration of its confidences (:mod:`.calibration`: expected
calibration error, reliability plot) and its tumour cells against annotated regions
(:mod:`.annotations`).

The modules are imported by name (``napari_her2.cohort.batch``): each pulls in heavy
libraries (dask.distributed, matplotlib) that a user of the others does not need.
"""
