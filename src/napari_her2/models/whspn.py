"""WHSPN: the WSI-level HER2 score prediction network of seed 001 (section 3.2).

Input: the vector of tumour-tile fractions (0, 1+, 2+, 3+) of a slide. Output: one score per
slide class; ``argmax`` is the slide score. Two interchangeable models, both plain
``nn.Module`` so they save and load like every other model (safetensors, no pickle):

- ``whspn-mlp``: four fully connected layers, each but the last followed by ReLU (the
  paper: "four fully connected layers. Each layer is followed by ReLU"; a ReLU on the
  logits would clip them, so the last layer has none). Hidden sizes are not given: 64, 32, 16.
- ``whspn-svm``: a support vector classifier with a polynomial kernel (gamma 10, C 2 as in
  the paper; degree 3 and coef0 0 are scikit-learn's defaults). It is fitted with
  scikit-learn (:func:`fit_whspn_svm`) and then held as tensors (support vectors, dual
  coefficients, intercepts, support counts, class labels); its forward pass evaluates the
  one-vs-one decision functions in torch and returns vote counts, reproducing
  ``SVC.predict`` (ties go to the lower class, as in libsvm).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .layers import as_int_tuple
from .registry import record_arch, register_model

SEED_001_WHSPN = "seed 001 (Han et al. 2022), section 3.2"


class WHSPNMLP(nn.Module):
    """Four linear layers with ReLU between them: fraction vector -> slide class logits."""

    def __init__(
        self, in_features: int = 4, hidden: Sequence[int] = (64, 32, 16), num_classes: int = 4
    ) -> None:
        super().__init__()
        sizes = (int(in_features), *as_int_tuple(hidden, 3, "hidden"), int(num_classes))
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.num_classes = int(num_classes)

    def forward(self, fractions: torch.Tensor) -> torch.Tensor:
        return self.net(fractions)


class WHSPNSVM(nn.Module):
    """Polynomial-kernel one-vs-one SVC evaluated in torch from stored tensors.

    ``forward(x)`` returns (N, num_classes) vote counts; classes that were absent from the
    training data get -1 so they never win. ``argmax`` equals scikit-learn's prediction.
    """

    support_vectors: torch.Tensor
    dual_coef: torch.Tensor
    intercept: torch.Tensor
    n_support: torch.Tensor
    class_labels: torch.Tensor

    def __init__(
        self,
        num_classes: int = 4,
        in_features: int = 4,
        n_support_vectors: int = 0,
        n_fitted_classes: int = 0,
        gamma: float = 10.0,
        degree: int = 3,
        coef0: float = 0.0,
        C: float = 2.0,
    ) -> None:
        super().__init__()
        k, s = int(n_fitted_classes), int(n_support_vectors)
        self.num_classes, self.gamma, self.degree, self.coef0, self.C = (
            int(num_classes),
            float(gamma),
            int(degree),
            float(coef0),
            float(C),
        )
        self.register_buffer(
            "support_vectors", torch.zeros(s, int(in_features), dtype=torch.float64)
        )
        self.register_buffer("dual_coef", torch.zeros(max(k - 1, 0), s, dtype=torch.float64))
        self.register_buffer("intercept", torch.zeros(k * (k - 1) // 2, dtype=torch.float64))
        self.register_buffer("n_support", torch.zeros(k, dtype=torch.int64))
        self.register_buffer("class_labels", torch.zeros(k, dtype=torch.int64))

    @classmethod
    def from_sklearn(cls, svc, num_classes: int = 4) -> WHSPNSVM:
        """Copy a fitted ``sklearn.svm.SVC`` (poly kernel, integer labels 0..num_classes-1)."""
        if svc.kernel != "poly":
            raise ValueError(f"WHSPN SVM needs a poly kernel, got {svc.kernel!r}")
        labels = np.asarray(svc.classes_)
        if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"SVC labels must be integers in [0, {num_classes}), got {labels}")
        if not isinstance(svc.gamma, (int, float)):
            raise ValueError(f"WHSPN SVM needs a numeric gamma, got {svc.gamma!r}")
        dual, intercept = np.asarray(svc.dual_coef_), np.asarray(svc.intercept_)
        if len(labels) == 2:  # scikit-learn flips the sign of binary models; undo it
            dual, intercept = -dual, -intercept
        model = cls(
            num_classes,
            svc.support_vectors_.shape[1],
            svc.support_vectors_.shape[0],
            len(labels),
            float(svc.gamma),
            int(svc.degree),
            float(svc.coef0),
            float(svc.C),
        )
        model.support_vectors.copy_(torch.from_numpy(np.asarray(svc.support_vectors_)))
        model.dual_coef.copy_(torch.from_numpy(dual))
        model.intercept.copy_(torch.from_numpy(intercept))
        model.n_support.copy_(torch.from_numpy(np.asarray(svc.n_support_, dtype=np.int64)))
        model.class_labels.copy_(torch.from_numpy(labels.astype(np.int64)))
        return model

    def decision_function(self, x: torch.Tensor) -> torch.Tensor:
        """(N, k(k-1)/2) one-vs-one decision values; > 0 votes for the first class of a pair."""
        x = x.to(torch.float64)
        kernel = (self.gamma * x @ self.support_vectors.T + self.coef0) ** self.degree
        k = len(self.n_support)
        starts = torch.cumsum(self.n_support, 0) - self.n_support
        cols = []
        for i in range(k):
            si = slice(int(starts[i]), int(starts[i] + self.n_support[i]))
            for j in range(i + 1, k):
                sj = slice(int(starts[j]), int(starts[j] + self.n_support[j]))
                d = (
                    kernel[:, si] @ self.dual_coef[j - 1, si]
                    + kernel[:, sj] @ self.dual_coef[i, sj]
                )
                cols.append(d)
        dec = torch.stack(cols, 1) if cols else x.new_zeros(x.shape[0], 0)
        return dec + self.intercept

    def forward(self, fractions: torch.Tensor) -> torch.Tensor:
        k = len(self.n_support)
        if k == 0:
            raise RuntimeError("this WHSPN SVM holds no fitted model")
        dec = self.decision_function(fractions)
        votes = torch.zeros(fractions.shape[0], k, dtype=torch.float64, device=dec.device)
        pair = 0
        for i in range(k):
            for j in range(i + 1, k):
                wins_i = (dec[:, pair] > 0).to(torch.float64)
                votes[:, i] += wins_i
                votes[:, j] += 1.0 - wins_i
                pair += 1
        out = torch.full(
            (fractions.shape[0], self.num_classes), -1.0, dtype=torch.float32, device=dec.device
        )
        out[:, self.class_labels] = votes.to(torch.float32)
        return out


def fit_whspn_svm(
    fractions: np.ndarray,
    labels: np.ndarray,
    num_classes: int = 4,
    gamma: float = 10.0,
    C: float = 2.0,
    degree: int = 3,
    coef0: float = 0.0,
) -> WHSPNSVM:
    """Fit scikit-learn's SVC (poly kernel; paper: gamma 10, C 2) and return it as tensors.

    The returned module is registered as ``whspn-svm`` (``arch_name``/``arch_args`` set), so
    ``save_checkpoint`` can store it directly.
    """
    from sklearn.svm import SVC

    svc = SVC(kernel="poly", gamma=gamma, C=C, degree=degree, coef0=coef0)
    svc.fit(np.asarray(fractions, dtype=np.float64), np.asarray(labels, dtype=np.int64))
    model = WHSPNSVM.from_sklearn(svc, num_classes)
    args = {
        "num_classes": int(num_classes),
        "in_features": int(model.support_vectors.shape[1]),
        "n_support_vectors": int(model.support_vectors.shape[0]),
        "n_fitted_classes": int(len(model.class_labels)),
        "gamma": model.gamma,
        "degree": model.degree,
        "coef0": model.coef0,
        "C": model.C,
    }
    record_arch(model, "whspn-svm", args)
    return model


@register_model("whspn-mlp", kind="slide", source=SEED_001_WHSPN)
def whspn_mlp(
    in_features: int = 4, hidden: Sequence[int] = (64, 32, 16), num_classes: int = 4
) -> WHSPNMLP:
    """WHSPN MLP (seed 001): 0/1+/2+/3+ tile fractions -> 4 FC layers -> slide score."""
    return WHSPNMLP(in_features, hidden, num_classes)


@register_model("whspn-svm", kind="slide", source=SEED_001_WHSPN)
def whspn_svm(
    num_classes: int = 4,
    in_features: int = 4,
    n_support_vectors: int = 0,
    n_fitted_classes: int = 0,
    gamma: float = 10.0,
    degree: int = 3,
    coef0: float = 0.0,
    C: float = 2.0,
) -> WHSPNSVM:
    """WHSPN SVM (seed 001): tile fractions -> poly-kernel SVC (gamma 10, C 2) -> slide score."""
    return WHSPNSVM(
        num_classes, in_features, n_support_vectors, n_fitted_classes, gamma, degree, coef0, C
    )
