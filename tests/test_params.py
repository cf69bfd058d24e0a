"""ScoringParams: nested, typed, serialisable, with every limit defined once."""

from __future__ import annotations

import json

import pytest

from napari_her2.params import LIMITS, Organ, ParamError, ScoringParams, load_params


def test_round_trip_through_dict_json_and_flat_names():
    p = ScoringParams().with_overrides(tile_size=128, organ="gastric", device="cpu", n_bags=8)
    assert p.call.organ is Organ.GASTRIC and p.grid.tile_size == 128
    again = ScoringParams.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p
    assert again.flat()["organ"] == "gastric" and again.flat()["n_bags"] == 8


@pytest.mark.parametrize("name", ["tile_size", "target_mpp", "batch_size", "n_bags"])
def test_each_limit_is_enforced_where_the_value_is_built(name):
    lim = LIMITS[name]
    with pytest.raises(ParamError, match=name.replace("_", " ")):
        ScoringParams().with_overrides(**{name: lim.hi * 2})


def test_unknown_names_and_bad_enums_are_refused(tmp_path):
    with pytest.raises(TypeError, match="tile_sise"):
        ScoringParams().with_overrides(tile_sise=3)
    with pytest.raises(ParamError, match="organ must be one of breast, gastric"):
        ScoringParams().with_overrides(organ="liver")
    bad = tmp_path / "p.json"
    bad.write_text('{"grid": {"tile_size": 64}, "extra": {}}')
    with pytest.raises(ParamError, match=f"{bad}.*unknown section"):
        load_params(bad)
    broken = tmp_path / "p.toml"
    broken.write_text("[grid\n")
    with pytest.raises(ParamError, match="not valid TOML"):
        load_params(broken)


def test_tissue_settings_travel_in_the_config(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"tissue": {"min_saturation": 0.05}}')
    assert load_params(path).tissue.min_saturation == 0.05


def test_batch_scores_with_every_setting_of_score(tmp_path):
    """A batch task gets the whole ScoringParams (tissue settings included) and writes the
    same report as ``score`` would."""
    from napari_her2._sample_data import ihc_mosaic
    from napari_her2.cohort.batch import score_one
    from napari_her2.run.pipeline import score_slide
    from napari_her2.slide import write_pyramid_tiff

    slide = write_pyramid_tiff(tmp_path / "s.tif", ihc_mosaic(rows=1, cols=2, gap=64), 0.5)
    params = ScoringParams.from_dict({"tissue": {"min_saturation": 0.05, "max_saturation": 0.05},
                                      "grid": {"tile_size": 128}, "model": {"workers": 1}})
    row = score_one(str(slide), str(tmp_path / "out"), params.to_dict())
    assert row["status"] == "ok"
    written = json.loads((tmp_path / "out" / "s.json").read_text())
    direct = score_slide(slide, params=params).to_dict()
    assert written["params"] == direct["params"] == params.to_dict()
    assert written["n_tissue_tiles"] == direct["n_tissue_tiles"]
    assert written["class_fractions"] == direct["class_fractions"]
