"""The weight-free dab-membrane scorer: deconvolution, measurements, classes, model card."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from skimage import data
from skimage.io import imread

from napari_her2.ihc.deconvolution import (
    DEFAULT_DAB,
    DEFAULT_HAEMATOXYLIN,
    angle_deg,
    deconvolve,
    estimate_stain_matrix,
    optical_density,
    stain_matrix,
)
from napari_her2.ihc.membrane import CLASSES, FEATURE_NAMES, DabMembraneParams, classify
from napari_her2.ihc.scorer import DabMembraneScorer
from napari_her2.ihc.tumour import TumourParams
from napari_her2.predict import TilePredictor

TUMOUR_SCORES = np.arange(4)


def shared_data() -> Path:
    env = os.environ.get("NAPARI_HER2_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


BCI = shared_data() / "her2-ihc-bci"


def expected_score(probs: np.ndarray) -> float:
    """Tumour-weighted mean of sum_k p_k * k over tiles (0 when nothing is tumour)."""
    tumour = probs[:, :4].sum(axis=1)
    return float((probs[:, :4] @ TUMOUR_SCORES).sum() / max(tumour.sum(), 1e-9))


def lattice(dab_od: float, *, broken: bool = False, period: int = 20) -> np.ndarray:
    """Synthetic epithelium: blue nuclei in a square lattice of DAB membranes (Beer-Lambert)."""
    yy, xx = np.mgrid[:256, :256]
    on_y, on_x = (yy % period) < 2, (xx % period) < 2
    membrane = on_y | on_x
    if broken:  # drop every other wall segment: incomplete membranes
        membrane &= ~(((yy // period + xx // period) % 2 == 0) & (on_y ^ on_x))
    nucleus = ((yy % period) - period / 2) ** 2 + ((xx % period) - period / 2) ** 2 < 25
    m = stain_matrix(DEFAULT_HAEMATOXYLIN, DEFAULT_DAB)
    od = nucleus[..., None] * 0.5 * m[0] + membrane[..., None] * dab_od * m[1] + 0.03 * m[0]
    return np.clip(255 * 10 ** (-od), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def scorer() -> DabMembraneScorer:
    return DabMembraneScorer()


def test_implements_tile_predictor(scorer):
    assert isinstance(scorer, TilePredictor)
    assert scorer.name == "dab-membrane"
    assert scorer.classes == ("0", "1+", "2+", "3+", "non-tumour")
    assert scorer.input_size == 256 and scorer.target_mpp == 0.5
    assert scorer.feature_names == FEATURE_NAMES
    assert len(scorer.sha256) == 64 and int(scorer.sha256, 16) >= 0


def test_sha256_is_a_stable_hash_of_the_params():
    assert DabMembraneScorer().sha256 == DabMembraneScorer(DabMembraneParams()).sha256
    assert DabMembraneScorer(DabMembraneParams(strong_od=0.7)).sha256 != DabMembraneScorer().sha256


def test_model_card_is_json_and_names_thresholds_and_limits(scorer):
    card = json.loads(json.dumps(scorer.describe()))
    assert card["name"] == "dab-membrane" and card["sha256"] == scorer.sha256
    assert card["thresholds"]["weak_od"] == 0.2
    assert card["thresholds"]["moderate_od"] == 0.4
    assert card["thresholds"]["strong_od"] == 0.6
    assert "not for diagnosis" in card["limits"]
    assert "in-situ" in card["limits"]
    assert card["intended_use"].startswith("Research use only; not for diagnosis.")


def test_params_reject_unordered_thresholds():
    with pytest.raises(ValueError, match="increase"):
        DabMembraneParams(weak_od=0.5, moderate_od=0.4)
    with pytest.raises(ValueError):
        DabMembraneParams(tumour_softness=0)


def test_deconvolution_separates_pure_stains():
    m = stain_matrix(DEFAULT_HAEMATOXYLIN, DEFAULT_DAB)
    pure = np.stack([255 * 10 ** (-0.5 * m[0]), 255 * 10 ** (-0.5 * m[1])])
    h, d = deconvolve(np.round(pure).astype(np.uint8))
    assert h[0] == pytest.approx(0.5, abs=0.02) and d[0] == pytest.approx(0.0, abs=0.02)
    assert d[1] == pytest.approx(0.5, abs=0.02) and h[1] == pytest.approx(0.0, abs=0.02)


@pytest.mark.parametrize("background", [None, (238.0, 236.0, 247.0)])
def test_deconvolve_by_tables_is_the_inverse_matrix_per_pixel(background):
    """The per-channel tables give every pixel's OD times the inverse stain matrix, clipped at
    0, to float rounding: every 8-bit colour, against white and against a tinted glass."""
    levels = np.arange(0, 256, 5, dtype=np.uint8)
    rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1)
    m = stain_matrix((0.62, 0.62, 0.48), (0.27, 0.57, 0.78))
    od = optical_density(rgb, background).astype(np.float64)
    want = np.maximum(od @ np.linalg.inv(m), 0)
    h, d = deconvolve(rgb, m, background)
    np.testing.assert_allclose(h, want[..., 0], atol=2e-6)
    np.testing.assert_allclose(d, want[..., 1], atol=2e-6)


def test_deconvolve_rejects_non_uint8():
    with pytest.raises(TypeError):
        deconvolve(np.zeros((2, 2, 3), np.float32))


def test_blank_white_tile_is_non_tumour(scorer):
    pred = scorer.predict(np.full((2, 256, 256, 3), 255, np.uint8))
    assert pred.probs.shape == (2, 5) and pred.features.shape == (2, len(FEATURE_NAMES))
    assert np.allclose(pred.probs.sum(axis=1), 1, atol=1e-5)
    assert (pred.probs.argmax(axis=1) == CLASSES.index("non-tumour")).all()
    assert np.isfinite(pred.features).all()


def test_empty_batch_and_bad_shape(scorer):
    pred = scorer.predict(np.zeros((0, 256, 256, 3), np.uint8))
    assert pred.probs.shape == (0, 5)
    with pytest.raises(ValueError):
        scorer.predict(np.zeros((256, 256, 3), np.uint8))


@pytest.mark.parametrize(
    ("tile", "expected"),
    [
        (lattice(0.9), "3+"),  # strong complete
        (lattice(0.5), "2+"),  # moderate complete
        (lattice(0.3), "2+"),  # weak complete
        (lattice(0.3, broken=True), "1+"),  # weak incomplete
        (lattice(0.0), "0"),  # tumour cells, no membrane staining
    ],
    ids=["strong", "moderate", "weak", "weak-incomplete", "unstained"],
)
def test_synthetic_membranes_follow_asco_cap(scorer, tile, expected):
    probs = scorer.predict(tile[None]).probs[0]
    assert CLASSES[int(probs.argmax())] == expected, probs


def test_completeness_tells_closed_from_broken_membranes(scorer):
    feats = scorer.predict(np.stack([lattice(0.5), lattice(0.5, broken=True)])).features
    k = FEATURE_NAMES.index("completeness")
    assert feats[0, k] > 0.8 > 0.3 > feats[1, k]


def test_changing_a_threshold_changes_the_call():
    tile = lattice(0.9)[None]
    assert CLASSES[int(DabMembraneScorer().predict(tile).probs[0].argmax())] == "3+"
    strict = DabMembraneScorer(DabMembraneParams(strong_od=1.5))
    assert CLASSES[int(strict.predict(tile).probs[0].argmax())] == "2+"
    no_tumour = DabMembraneScorer(DabMembraneParams(tumour=TumourParams(min_density=0.99)))
    assert CLASSES[int(no_tumour.predict(tile).probs[0].argmax())] == "non-tumour"


def _features(**values: float) -> np.ndarray:
    row = np.zeros((1, len(FEATURE_NAMES)), np.float32)
    for name, value in values.items():
        row[0, FEATURE_NAMES.index(name)] = value
    return row


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"tumour_fraction": 0.8, "stained_fraction": 0.6, "completeness": 0.9,
          "dab_od_mean": 0.9}, "3+"),
        ({"tumour_fraction": 0.8, "stained_fraction": 0.6, "completeness": 0.9,
          "dab_od_mean": 0.45}, "2+"),
        ({"tumour_fraction": 0.8, "stained_fraction": 0.6, "completeness": 0.1,
          "dab_od_mean": 0.8}, "2+"),  # incomplete but strong: equivocal
        ({"tumour_fraction": 0.8, "stained_fraction": 0.6, "completeness": 0.1,
          "dab_od_mean": 0.15}, "1+"),
        ({"tumour_fraction": 0.8, "stained_fraction": 0.05, "completeness": 0.1,
          "dab_od_mean": 0.15}, "0"),  # faint in <= 10%
        ({"tumour_fraction": 0.02, "stained_fraction": 0.6, "completeness": 0.9,
          "dab_od_mean": 0.9}, "non-tumour"),
    ],
)
def test_classify_rule(values, expected):
    probs = classify(_features(**values))
    assert probs.shape == (1, 5) and probs.sum() == pytest.approx(1, abs=1e-5)
    assert CLASSES[int(probs.argmax())] == expected


def test_softness_makes_probabilities_sharper():
    f = _features(tumour_fraction=0.8, stained_fraction=0.6, completeness=0.9, dab_od_mean=0.55)
    soft = classify(f, DabMembraneParams(intensity_softness=0.1))[0]
    sharp = classify(f, DabMembraneParams(intensity_softness=0.001))[0]
    assert sharp.max() > soft.max() and sharp.max() > 0.99


# --------------------------------------------------------------------------- real pixels

GLANDS = [(0, 128, 0, 128), (320, 448, 256, 384), (64, 192, 384, 448)]
STROMA = [(384, 512, 192, 256), (280, 330, 170, 270), (400, 512, 420, 512), (0, 96, 460, 512)]


def test_ihc_glands_score_higher_than_stroma(scorer):
    image = data.immunohistochemistry()
    gland = [expected_score(scorer.predict(image[a:b, c:d][None]).probs) for a, b, c, d in GLANDS]
    stroma = [expected_score(scorer.predict(image[a:b, c:d][None]).probs) for a, b, c, d in STROMA]
    assert min(gland) > 2.5, gland
    assert max(stroma) < 1.0, stroma
    k = FEATURE_NAMES.index("membrane_fraction")
    g = scorer.predict(image[0:128, 0:128][None]).features[0, k]
    s = scorer.predict(image[384:512, 192:256][None]).features[0, k]
    assert g > 0.2 > 0.02 > s


def test_stain_matrix_estimate_is_close_to_defaults_on_ihc():
    hem, dab = estimate_stain_matrix(data.immunohistochemistry())
    for est, ref in ((hem, DEFAULT_HAEMATOXYLIN), (dab, DEFAULT_DAB)):
        cos = np.dot(est, ref) / np.linalg.norm(ref)
        assert np.degrees(np.arccos(min(cos, 1.0))) < 15
    assert DabMembraneScorer(DabMembraneParams(haematoxylin=hem, dab=dab)).predict(
        data.immunohistochemistry()[:128, :128][None]).probs[0].argmax() == 3


def test_stain_matrix_estimate_needs_stained_pixels():
    with pytest.raises(ValueError, match="stained"):
        estimate_stain_matrix(np.full((32, 32, 3), 255, np.uint8))


def _bci_tiles(name: str) -> np.ndarray:
    image = imread(BCI / name)[..., :3]
    return image.reshape(4, 256, 4, 256, 3).transpose(0, 2, 1, 3, 4).reshape(16, 256, 256, 3)


@pytest.mark.skipif(not BCI.is_dir(), reason=f"shared BCI HER2 patches not found at {BCI} "
                    "(set NAPARI_HER2_SHARED_DATA to the shared data folder)")
def test_bci_3plus_patch_scores_higher_than_0_patch(scorer):
    high = expected_score(scorer.predict(_bci_tiles("00052_test_3+.png")).probs)
    low = expected_score(scorer.predict(_bci_tiles("00004_test_0.png")).probs)
    assert high > low + 1.0, (high, low)


def test_threaded_batches_give_the_same_result_as_one_thread(monkeypatch):
    from skimage.data import immunohistochemistry

    from napari_her2.ihc.scorer import DabMembraneScorer

    img = immunohistochemistry()
    tiles = np.stack([img[y : y + 128, x : x + 128] for y in (0, 128, 256) for x in (0, 128, 256)])
    scorer = DabMembraneScorer()
    threaded = scorer.predict(tiles)
    monkeypatch.setenv("NAPARI_HER2_SYNC", "1")
    single = scorer.predict(tiles)
    np.testing.assert_array_equal(threaded.probs, single.probs)
    np.testing.assert_array_equal(threaded.features, single.features)


def test_scorer_follows_the_tile_resolution():
    from napari_her2.ihc.scorer import DabMembraneScorer

    base = DabMembraneScorer()
    fine = base.at_mpp(0.25)
    assert base.at_mpp(base.params.mpp) is base
    assert fine.target_mpp == 0.25 and fine.params.ridge_sigma_um == base.params.ridge_sigma_um
    assert fine.sha256 != base.sha256


# --------------------------------------------------------------------------- organ and slide


def lateral(dab_od: float, period: int = 20) -> np.ndarray:
    """Columnar epithelium stained only along the lateral borders (vertical DAB lines, no
    apical or basal walls): gastric "lateral / basolateral" staining."""
    yy, xx = np.mgrid[:256, :256]
    membrane = (xx % period) < 2
    nucleus = ((yy % period) - period / 2) ** 2 + ((xx % period) - period / 2) ** 2 < 25
    m = stain_matrix(DEFAULT_HAEMATOXYLIN, DEFAULT_DAB)
    od = nucleus[..., None] * 0.5 * m[0] + membrane[..., None] * dab_od * m[1] + 0.03 * m[0]
    return np.clip(255 * 10 ** (-od), 0, 255).astype(np.uint8)


def test_gastric_counts_lateral_membranes_as_complete():
    tile = lateral(0.9)[None]
    breast = DabMembraneScorer()
    gastric = breast.for_organ("gastric")
    assert gastric.params.organ == "gastric" and breast.params.organ == "breast"
    assert gastric.sha256 != breast.sha256
    feats = breast.predict(tile).features[0]
    assert feats[FEATURE_NAMES.index("completeness")] < 0.3  # no closed rings
    assert feats[FEATURE_NAMES.index("lateral_fraction")] > 0.9
    assert CLASSES[int(breast.predict(tile).probs[0].argmax())] == "2+"  # incomplete, strong
    assert CLASSES[int(gastric.predict(tile).probs[0].argmax())] == "3+"  # lateral = complete


def test_for_organ_rejects_unknown_organs_and_keeps_the_resolution():
    assert DabMembraneScorer().at_mpp(0.25).for_organ("gastric").target_mpp == 0.25
    assert DabMembraneScorer().for_organ("gastric").at_mpp(0.25).params.organ == "gastric"
    with pytest.raises(ValueError, match="organ"):
        DabMembraneScorer().for_organ("lung")


def test_for_slide_estimates_stains_and_falls_back_when_implausible():
    base = DabMembraneScorer()
    ihc = data.immunohistochemistry()
    fitted = base.for_slide(ihc)
    assert fitted is not base and fitted.params.haematoxylin != DEFAULT_HAEMATOXYLIN
    assert fitted.params.dab != DEFAULT_DAB  # the sample has plenty of DAB
    # a slide with no stain at all keeps the default vectors; its glass is its background
    blank = base.for_slide(np.full((64, 64, 3), 250, np.uint8)).params
    assert (blank.haematoxylin, blank.dab) == (DEFAULT_HAEMATOXYLIN, DEFAULT_DAB)
    assert blank.background == (250, 250, 250)
    assert base.for_slide(np.full((64, 64, 3), 255, np.uint8)) is base
    # only blue counterstain (a HER2 0 slide): no DAB to estimate, the DAB default stays
    blue = lattice(0.0)
    assert base.for_slide(blue).params.dab == DEFAULT_DAB
    # a tissue mask leaves the masked-out pixels out of the vectors (not of the background)
    mask = np.zeros(ihc.shape[:2], bool)
    masked = base.for_slide(ihc, mask).params
    assert (masked.haematoxylin, masked.dab) == (DEFAULT_HAEMATOXYLIN, DEFAULT_DAB)
    assert masked.background == fitted.params.background


def test_for_slide_thins_a_large_sample_to_the_pixel_budget(monkeypatch):
    """A stain sample read at ×40 (16 tiles of 512 px) is thinned to every k-th pixel: the
    estimate sees at most ``STAIN_PIXELS`` pixels and lands within a fraction of a degree of
    the estimate from every pixel."""
    from napari_her2.ihc import scorer as scorer_module

    ihc = data.immunohistochemistry()  # 512 x 512
    sample = np.stack([np.rot90(ihc, k) for k in range(4)] * 4)  # 16 tiles of 512 px
    seen: list[int] = []
    real = scorer_module.estimate_stain_matrix

    def spy(rgb, **kw):
        seen.append(len(rgb))
        return real(rgb, **kw)

    monkeypatch.setattr(scorer_module, "estimate_stain_matrix", spy)
    thinned = DabMembraneScorer().for_slide(sample).params
    assert seen == [scorer_module.STAIN_PIXELS]  # 4 times the budget: every 4th pixel
    full_h, full_d = real(sample.reshape(-1, 3), background=thinned.background)
    assert angle_deg(thinned.haematoxylin, full_h) < 0.5
    assert angle_deg(thinned.dab, full_d) < 0.5
    # a sample within the budget is used whole
    seen.clear()
    DabMembraneScorer().for_slide(sample[:4])
    assert seen == [4 * 512 * 512]


def test_for_slide_keeps_scoring_the_sample_image():
    ihc = data.immunohistochemistry()
    fitted = DabMembraneScorer().for_slide(ihc)
    assert fitted.predict(ihc[:128, :128][None]).probs[0].argmax() == 3


def test_identity_is_the_fixed_parameters_not_the_slide_stain_estimate():
    """Stain vectors estimated per slide differ in their last bits between machines; the
    scorer's hash is its fixed parameters, and the vectors are reported rounded."""
    from dataclasses import replace

    base = DabMembraneScorer()
    hem = np.asarray(DEFAULT_HAEMATOXYLIN) + 1e-9
    dab = np.asarray(DEFAULT_DAB) - 1e-9
    nudged = DabMembraneScorer(replace(base.params, haematoxylin=tuple(hem), dab=tuple(dab)))
    assert nudged.sha256 == base.sha256
    assert nudged.slide_estimates() == base.slide_estimates()
    assert nudged.describe() == base.describe()
    # a fixed parameter does change the identity
    assert DabMembraneScorer(replace(base.params, strong_od=0.61)).sha256 != base.sha256
