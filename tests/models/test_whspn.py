"""WHSPN slide models: the SVM reproduces scikit-learn; MLP and SVM survive save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.svm import SVC

from napari_her2.models import (
    ModelCard,
    fit_whspn_svm,
    get_model,
    load_checkpoint,
    save_checkpoint,
)

HER2 = ("0", "1+", "2+", "3+")


def _fractions(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.dirichlet(np.ones(4), n)
    y = np.argmax(x + rng.normal(0, 0.1, x.shape), axis=1)
    return x, y


@pytest.mark.parametrize("labels", [(0, 1, 2, 3), (0, 1), (0, 2, 3)])
def test_svm_matches_sklearn(labels):
    x, y = _fractions(90, 0)
    y = np.array(labels)[y % len(labels)]
    model = fit_whspn_svm(x, y)
    svc = SVC(kernel="poly", gamma=10, C=2).fit(x, y)
    xt, _ = _fractions(400, 1)
    ours = model(torch.from_numpy(xt)).argmax(1).numpy()
    assert np.array_equal(ours, svc.predict(xt))
    assert set(np.unique(ours)) <= set(labels)
    absent = [c for c in range(4) if c not in labels]
    assert torch.all(model(torch.from_numpy(xt))[:, absent] == -1)


def test_svm_round_trip(tmp_path):
    x, y = _fractions(60, 2)
    model = fit_whspn_svm(x, y)
    card = ModelCard(architecture="whspn-svm", classes=HER2, training_data="synthetic fractions")
    path = tmp_path / "whspn-svm.safetensors"
    written = save_checkpoint(path, model, card)
    assert written.arch_args["gamma"] == 10.0 and written.arch_args["C"] == 2.0
    loaded, _ = load_checkpoint(path)
    assert loaded.support_vectors.dtype == torch.float64
    xt = torch.from_numpy(_fractions(200, 3)[0])
    assert torch.equal(model(xt), loaded(xt))
    assert b"pickle" not in path.read_bytes()[:8]


def test_mlp_round_trip(tmp_path):
    torch.manual_seed(0)
    model = get_model("whspn-mlp").eval()
    path = tmp_path / "whspn-mlp.safetensors"
    save_checkpoint(path, model, ModelCard(architecture="whspn-mlp", classes=HER2))
    loaded, card = load_checkpoint(path)
    xt = torch.from_numpy(_fractions(50, 4)[0]).float()
    assert torch.equal(model(xt), loaded(xt))
    assert card.input_size is None


def test_empty_svm_refuses_to_predict():
    with pytest.raises(RuntimeError, match="no fitted model"):
        get_model("whspn-svm")(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="poly"):
        from napari_her2.models.whspn import WHSPNSVM

        WHSPNSVM.from_sklearn(SVC(kernel="rbf").fit(*_fractions(20, 5)))
