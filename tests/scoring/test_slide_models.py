"""Learned slide scores: WHSPN (SVM, MLP) over tumour fractions, Monte-Carlo attention MIL."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_her2.errors import CheckpointError, Her2Error, ModelNotFoundError
from napari_her2.models import ModelCard, fit_whspn_svm, get_model, save_checkpoint
from napari_her2.scoring import score_tiles
from napari_her2.scoring.slide_models import (
    SlideModel,
    SlideModelResult,
    load_slide_model,
    tumour_fractions,
)
from napari_her2.tiles.results import TileResults

HER2 = ("0", "1+", "2+", "3+")
TILE_CLASSES = (*HER2, "normal")
COLS = 20
EMB = 8


# --------------------------------------------------------------------------- builders


def make_results(outcomes, *, embeddings=None, readable=None, seed=0) -> TileResults:
    """Tile results whose arg-max class of tile i is ``TILE_CLASSES[outcomes[i]]``."""
    outcomes = np.asarray(outcomes)
    n = len(outcomes)
    rng = np.random.default_rng(seed)
    probs = rng.uniform(0, 0.1, (n, len(TILE_CLASSES)))
    probs[np.arange(n), outcomes] += 0.8
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
    readable = np.ones(n, bool) if readable is None else np.asarray(readable, bool)
    probs[~readable] = np.nan
    rows, cols = np.divmod(np.arange(n), COLS)
    return TileResults(
        classes=TILE_CLASSES, feature_names=(), grid_shape=(int(rows.max()) + 1, COLS),
        origin0=(0.0, 0.0), tile_size0=(256.0, 256.0), rows=rows.astype(np.int32),
        cols=cols.astype(np.int32), probs=probs, readable=readable,
        embeddings=None if embeddings is None else np.asarray(embeddings, np.float32),
    )


def tiles_with_fractions(fractions, n_tumour=100, n_other=30, n_unreadable=5) -> TileResults:
    """Tumour tiles in the given 0/1+/2+/3+ proportions plus non-tumour and unreadable ones."""
    counts = np.round(np.asarray(fractions) * n_tumour).astype(int)
    outcomes = np.concatenate([np.repeat(np.arange(4), counts), np.full(n_other, 4),
                               np.zeros(n_unreadable, int)])
    readable = np.arange(len(outcomes)) < len(outcomes) - n_unreadable
    return make_results(outcomes, readable=readable)


def planted_embeddings(n: int, planted: np.ndarray, seed: int = 0) -> np.ndarray:
    """(n, EMB) embeddings: noise in dims 1.., dim 0 is 3 on planted tiles and 0 elsewhere."""
    emb = np.random.default_rng(seed).normal(0, 1, (n, EMB)).astype(np.float32)
    emb[:, 0] = 0.0
    emb[planted, 0] = 3.0
    return emb


def cascade_labels(x: np.ndarray) -> np.ndarray:
    """Guideline-like slide labels: highest k whose ">= k" fraction exceeds 10%."""
    at_least = np.cumsum(x[:, ::-1], axis=1)[:, ::-1]
    y = np.zeros(len(x), np.int64)
    for k in (1, 2, 3):
        y[at_least[:, k] > 0.1] = k
    return y


def planted_abmil(uniform_attention: bool = False) -> torch.nn.Module:
    """ABMIL on 8-dim embeddings where embedding[0] drives both attention and class 3+.

    embed = identity (+ReLU); attention score = 5 tanh(h0) (gate ~1); logits =
    (1, 0, 0, 10 z0 - 5) for the attention-pooled embedding z. A bag holding a planted tile
    (h0 = 3) is 3+, one without is 0.
    """
    model = get_model("abmil", in_features=EMB, embed_dim=EMB, attn_dim=4, num_classes=4)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed[0].weight.copy_(torch.eye(EMB))
        model.attention.value.weight[0, 0] = 1.0
        model.attention.gate.bias.fill_(10.0)
        if not uniform_attention:
            model.attention.score.weight[0, 0] = 5.0
        model.head.weight[3, 0] = 10.0
        model.head.bias.copy_(torch.tensor([1.0, 0.0, 0.0, -5.0]))
    return model.eval()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _empty_models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_HER2_MODELS", str(tmp_path / "models"))


@pytest.fixture
def svm_path(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.full(4, 0.5), 200)
    model = fit_whspn_svm(x, cascade_labels(x))
    card = ModelCard(architecture="whspn-svm", classes=HER2, input_size=None,
                     training_data="synthetic fraction vectors (tests)")
    path = tmp_path / "whspn-svm.safetensors"
    save_checkpoint(path, model, card)
    return path


@pytest.fixture
def mlp_path(tmp_path):
    """WHSPN MLP set by hand: logits = 10 x fractions (identity through the ReLUs)."""
    model = get_model("whspn-mlp")
    linears = [m for m in model.net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for i, layer in enumerate(linears):
            layer.weight.zero_()
            layer.bias.zero_()
            layer.weight[:4, :4] = torch.eye(4) * (10.0 if i == len(linears) - 1 else 1.0)
    path = tmp_path / "whspn-mlp.safetensors"
    save_checkpoint(path, model, ModelCard(architecture="whspn-mlp", classes=HER2, name="mlp"))
    return path


@pytest.fixture
def mil_path(tmp_path):
    path = tmp_path / "abmil.safetensors"
    save_checkpoint(path, planted_abmil(), ModelCard(architecture="abmil", classes=HER2))
    return path


@pytest.fixture
def mil(mil_path) -> SlideModel:
    return load_slide_model(mil_path)


# --------------------------------------------------------------------------- WHSPN


def test_fractions_are_the_guideline_rules():
    results = tiles_with_fractions([0.2, 0.3, 0.1, 0.4])
    fractions, n_tumour = tumour_fractions(results)
    rule = score_tiles(results, n_samples=10)
    assert n_tumour == rule.n_tumour_tiles == 100
    assert np.allclose(fractions, [rule.class_fractions[c] for c in HER2])
    assert np.allclose(fractions, [0.2, 0.3, 0.1, 0.4])


@pytest.mark.parametrize(("fractions", "score", "category"), [
    ([1.0, 0.0, 0.0, 0.0], "0", "negative"),
    ([0.05, 0.9, 0.05, 0.0], "1+", "negative"),
    ([0.1, 0.1, 0.8, 0.0], "2+", "equivocal"),
    ([0.2, 0.2, 0.2, 0.4], "3+", "positive"),
])
def test_whspn_svm_scores_clear_slides(svm_path, fractions, score, category):
    model = load_slide_model(svm_path)
    assert model.kind == "slide"
    result = model.score(tiles_with_fractions(fractions))
    assert (result.score, result.category, result.method) == (score, category, "whspn-svm")
    assert result.probs.tolist() == [float(c == score) for c in HER2]
    assert result.interval is None and result.attention is None and result.n_bags is None
    assert result.n_instances == 100


def test_whspn_mlp_hand_set_weights(mlp_path):
    model = load_slide_model(mlp_path)
    fractions = np.array([0.1, 0.1, 0.2, 0.6])
    result = model.score(tiles_with_fractions(fractions))
    expected = torch.softmax(torch.tensor(10 * fractions), 0).numpy()
    assert np.allclose(result.probs, expected, atol=1e-5)
    assert (result.score, result.method, result.name) == ("3+", "whspn-mlp", "mlp")
    assert result.sha256 == model.sha256 and len(result.sha256) == 64
    other = model.score(tiles_with_fractions([0.7, 0.1, 0.1, 0.1]))
    assert other.score == "0"


def test_whspn_needs_tumour_tiles(svm_path):
    results = make_results(np.full(20, 4))  # non-tumour only
    with pytest.raises(Her2Error, match="no tumour tile"):
        load_slide_model(svm_path).score(results)


def test_result_to_dict_is_json(svm_path, mil):
    for result in (load_slide_model(svm_path).score(tiles_with_fractions([0, 0, 0, 1])),
                   mil.score(_planted_results(300, 30), n_bags=8)):
        data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
        assert "attention" not in data
        assert data["score"] == result.score and set(data["probs"]) == set(HER2)
    assert data["interval"]["3+"][0] <= data["probs"]["3+"] <= data["interval"]["3+"][1]


# --------------------------------------------------------------------------- MIL


def _planted_results(n: int, n_planted: int, **kw) -> TileResults:
    planted = np.arange(n_planted) * (n // max(n_planted, 1))
    return make_results(np.zeros(n, int), embeddings=planted_embeddings(n, planted), **kw)


def test_mil_calls_3plus_and_attends_to_planted_tiles(mil):
    n, planted = 300, np.arange(30) * 10
    results = make_results(np.zeros(n, int), embeddings=planted_embeddings(n, planted))
    result = mil.score(results, n_bags=32, bag_size=100, seed=0)
    assert isinstance(result, SlideModelResult)
    assert (result.score, result.category, result.method) == ("3+", "positive",
                                                              "abmil-monte-carlo")
    assert result.probs[3] > 0.99 and result.interval.shape == (4, 2)
    assert (result.n_bags, result.bag_size, result.seed) == (32, 100, 0)
    heat = result.attention
    assert heat.shape == (n,) and np.isfinite(heat).all()
    others = np.setdiff1d(np.arange(n), planted)
    assert heat[planted].min() > 10 * heat[others].max()


def test_mil_without_planted_tiles_calls_0(mil):
    result = mil.score(_planted_results(300, 0), n_bags=16)
    assert (result.score, result.category) == ("0", "negative")
    assert np.isclose(result.probs[0], np.e / (np.e + 2 + np.exp(-5)))


def test_mil_interval_contains_mean_and_spreads(mil):
    result = mil.score(_planted_results(300, 3), n_bags=64, bag_size=100, seed=1)
    lo, hi = result.interval[:, 0], result.interval[:, 1]
    assert np.all(lo <= result.probs + 1e-12) and np.all(result.probs <= hi + 1e-12)
    assert hi[3] - lo[3] > 0.5  # some bags miss all three planted tiles
    assert np.isclose(result.probs.sum(), 1.0)


def test_mil_deterministic_per_seed(mil):
    results = _planted_results(300, 3)
    a = mil.score(results, n_bags=16, seed=7)
    b = mil.score(results, n_bags=16, seed=7)
    c = mil.score(results, n_bags=16, seed=8)
    np.testing.assert_array_equal(a.probs, b.probs)
    np.testing.assert_array_equal(a.attention, b.attention)
    assert not np.array_equal(a.probs, c.probs)
    assert not np.allclose(a.attention, c.attention, equal_nan=True)


def test_mil_unreadable_and_unsampled_tiles_are_nan(mil):
    n = 300
    readable = np.arange(n) >= 10
    emb = planted_embeddings(n, np.arange(20, 50))
    emb[~readable] = np.nan
    results = make_results(np.zeros(n, int), embeddings=emb, readable=readable)
    full = mil.score(results, n_bags=64, bag_size=100)
    assert np.isnan(full.attention[:10]).all() and np.isfinite(full.attention[10:]).all()
    assert full.n_instances == n - 10
    one = mil.score(results, n_bags=1, bag_size=10)
    assert np.count_nonzero(np.isfinite(one.attention)) == 10 and one.bag_size == 10


def test_mil_uniform_attention_gives_bag_probability(tmp_path):
    path = tmp_path / "uniform.safetensors"
    save_checkpoint(path, planted_abmil(uniform_attention=True),
                    ModelCard(architecture="abmil", classes=HER2))
    result = load_slide_model(path).score(_planted_results(50, 0), n_bags=4, bag_size=500)
    assert result.bag_size == 50  # all tiles in every bag
    expected = torch.softmax(torch.tensor([1.0, 0.0, 0.0, -5.0]), 0).numpy()
    assert np.allclose(result.probs, expected, atol=1e-6)
    assert np.allclose(result.attention, expected[0], atol=1e-6)


def test_mil_needs_embeddings(mil):
    with pytest.raises(Her2Error, match="embeddings.*not a weight-free scorer"):
        mil.score(make_results(np.zeros(10, int)))


def test_mil_embedding_size_mismatch(mil):
    results = make_results(np.zeros(10, int), embeddings=np.zeros((10, 16)))
    with pytest.raises(Her2Error, match=r"takes 8-dimensional.*gave 16-dimensional"):
        mil.score(results)


def test_mil_rejects_bad_settings(mil):
    with pytest.raises(Her2Error, match="n_bags"):
        mil.score(_planted_results(20, 2), n_bags=0)


# --------------------------------------------------------------------------- loading


def test_tile_checkpoint_is_refused(tmp_path):
    path = tmp_path / "tiles.safetensors"
    save_checkpoint(path, get_model("her2-resnet"),
                    ModelCard(architecture="her2-resnet", classes=HER2, input_size=64))
    with pytest.raises(CheckpointError) as err:
        load_slide_model(path)
    message = str(err.value)
    assert "tiles.safetensors" in message and "is a tile model; use it as --model" in message
    assert "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.safetensors"):
        load_slide_model(tmp_path / "nope.safetensors")


def test_bare_architecture_name_has_no_weights():
    with pytest.raises(ModelNotFoundError, match="without trained weights"):
        load_slide_model("abmil")
    with pytest.raises(ModelNotFoundError, match="unknown slide model"):
        load_slide_model("no-such-model")


def test_checkpoint_name_in_models_folder(tmp_path, mil_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "my-mil.safetensors").write_bytes(mil_path.read_bytes())
    assert load_slide_model("my-mil").kind == "mil"


# --------------------------------------------------------------------------- calibration


def _with_temperature(path, tmp_path, temperature: float):
    """The checkpoint at ``path`` saved again with a calibration temperature in its card."""
    model = load_slide_model(path)
    card = model.card.replace(sha256="", metrics={"calibration": {"temperature": temperature}})
    out = tmp_path / f"t{temperature}-{path.name}"
    save_checkpoint(out, model.model, card)
    return load_slide_model(out)


def test_whspn_mlp_divides_its_logits_by_the_cards_temperature(mlp_path, tmp_path):
    plain, hot = load_slide_model(mlp_path), _with_temperature(mlp_path, tmp_path, 2.5)
    assert (plain.card.temperature, hot.card.temperature) == (None, 2.5)
    tiles = tiles_with_fractions([0.1, 0.1, 0.2, 0.6])
    z = 10 * torch.tensor([0.1, 0.1, 0.2, 0.6], dtype=torch.float64)
    a, b = plain.score(tiles), hot.score(tiles)
    assert np.allclose(b.probs, torch.softmax(z / 2.5, 0).numpy(), atol=1e-5)
    assert np.allclose(a.probs, torch.softmax(z, 0).numpy(), atol=1e-5)
    assert a.score == b.score == "3+" and b.probs.max() < a.probs.max()


def test_mil_bags_are_softened_by_the_cards_temperature(tmp_path):
    path = tmp_path / "uniform.safetensors"
    save_checkpoint(path, planted_abmil(uniform_attention=True),
                    ModelCard(architecture="abmil", classes=HER2))
    hot = _with_temperature(path, tmp_path, 2.0)
    result = hot.score(_planted_results(50, 0), n_bags=4, bag_size=500)
    z = torch.tensor([1.0, 0.0, 0.0, -5.0], dtype=torch.float64)
    assert np.allclose(result.probs, torch.softmax(z / 2.0, 0).numpy(), atol=1e-6)
    assert np.allclose(result.interval[:, 0], result.probs) and result.score == "0"


def test_mil_call_keeps_its_class_under_a_temperature(mil, mil_path, tmp_path):
    hot = _with_temperature(mil_path, tmp_path, 4.0)
    results = _planted_results(300, 30)
    a, b = mil.score(results, n_bags=32, seed=0), hot.score(results, n_bags=32, seed=0)
    assert a.score == b.score == "3+" and b.probs[3] < a.probs[3]


def test_the_svm_ignores_a_temperature(svm_path, tmp_path):
    hot = _with_temperature(svm_path, tmp_path, 3.0)
    result = hot.score(tiles_with_fractions([0.0, 0.0, 0.1, 0.9]))
    assert sorted(result.probs.tolist()) == [0.0, 0.0, 0.0, 1.0]
