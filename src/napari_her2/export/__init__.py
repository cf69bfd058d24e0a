"""Everything napari-her2 writes: QuPath GeoJSON, CSV, the JSON report, review files; all atomic."""

from .atomic import (
    atomic_write,
    ensure_out_dir,
    safe_stem,
    sweep_stale_temps,
    write_json,
    write_report_json,
    write_text,
)
from .geojson import (
    ID_NAMESPACE,
    OBJECT_TYPES,
    QUPATH_NAMES,
    labels_to_geojson,
    layer_geojson,
    tile_id,
    tiles_to_geojson,
    validate_qupath_geojson,
    write_geojson,
)
from .outputs import write_outputs
from .review import (
    LabelledTile,
    ReviewFileError,
    read_review,
    review_path,
    review_to_geojson,
    save_review,
)
from .tables import tiles_csv_text, write_tiles_csv

__all__ = [
    "ID_NAMESPACE",
    "LabelledTile",
    "OBJECT_TYPES",
    "QUPATH_NAMES",
    "ReviewFileError",
    "atomic_write",
    "ensure_out_dir",
    "labels_to_geojson",
    "layer_geojson",
    "read_review",
    "safe_stem",
    "review_path",
    "review_to_geojson",
    "save_review",
    "sweep_stale_temps",
    "tile_id",
    "tiles_csv_text",
    "tiles_to_geojson",
    "validate_qupath_geojson",
    "write_geojson",
    "write_json",
    "write_outputs",
    "write_report_json",
    "write_text",
    "write_tiles_csv",
]
