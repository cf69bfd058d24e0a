"""Many slides at once: batch scoring over dask.distributed (:mod:`.batch`), scoring a
labelled folder (:mod:`.evaluate`) and the agreement figures it reports (:mod:`.metrics`).

The modules are imported by name (``napari_her2.cohort.batch``): each pulls in heavy
libraries (dask.distributed, matplotlib) that a user of the others does not need.
"""
