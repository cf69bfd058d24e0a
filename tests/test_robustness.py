"""Calls that a second scan of the same glass would keep (real images, ../shared/data).

A scanner other than the one the thresholds were read on changes the focus, the noise, the
strength of the stains as they are recorded, the exposure and the µm/px it reports. A call
that is right on the shared images must not turn on such changes: each image is scored as
given and after one change at a time, written as a lossless PNG so that only the change
differs.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.io import imread, imsave

from napari_her2 import score_slide


def _perturbed(rgb: np.ndarray, change: str) -> np.ndarray:
    if change == "blur":  # a slightly softer focus: Gaussian of 0.7 px
        out = np.stack([ndi.gaussian_filter(rgb[..., c].astype(float), 0.7) for c in range(3)], -1)
    elif change == "noise":  # sensor noise, 3 grey levels
        out = rgb + np.random.default_rng(0).normal(0, 3, rgb.shape)
    elif change == "dimmer":  # 20% less light: glass reads 204, every pixel darker
        out = rgb * 0.8
    elif change in ("paler", "darker"):  # stains recorded 15% weaker or stronger
        od = -np.log(np.maximum(rgb, 1) / 255.0) * (0.85 if change == "paler" else 1.15)
        out = 255 * np.exp(-od)
    else:
        return rgb
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


CHANGES = [("as given", 1.0), ("blur", 1.0), ("noise", 1.0), ("paler", 1.0), ("darker", 1.0),
           ("dimmer", 1.0), ("as given", 0.9), ("as given", 1.1)]  # last two: µm/px 10% off
CASES = {
    # image, crop, µm/px, organ, the call it keeps
    "bci-00052-3+": ("her2-ihc-bci/00052_test_3+.png", np.s_[:, :], 0.5, "breast", "3+"),
    "bci-00004-no-carcinoma": ("her2-ihc-bci/00004_test_0.png", np.s_[:, :], 0.5, "breast",
                               None),
    "bci-00249-normal-ducts": ("her2-ihc-bci/00249_test_2+.png", np.s_[:, :], 0.5, "breast",
                               None),
    "tma-2_0123a214-2+": ("her2-ihc-tma/2_0123a214-85b7-4804-86db-474b05a4ae57.jpg",
                          np.s_[1710:3758, 1710:3758], 0.25, "gastric", "2+"),
    # the 0 / 1+ boundary (HER2-low), the same central 2048 px of each core; the whole
    # 1_154ae963 core is more fragile (docs/validation.md)
    "tma-0_a6d0d6a6-0": ("her2-ihc-tma/0_a6d0d6a6-4dc6-4368-9d69-8ded066cf60e.jpg",
                         np.s_[1710:3758, 1710:3758], 0.25, "gastric", "0"),
    "tma-1_154ae963-1+": ("her2-ihc-tma/1_154ae963-bd2a-4a12-8fa9-815ba13922ae.jpg",
                          np.s_[1710:3758, 1710:3758], 0.25, "gastric", "1+"),
}


#: changes a right call does not survive yet, and why; the test fails when one of them starts
#: to keep the call, so that the entry is removed
KNOWN = {
    ("bci-00052-3+", "paler at 1 x µm/px"): (
        "3+ rests on 12% of the tumour cells seen at x5 (the 3+ cut is 10%); with the "
        "stains recorded 15% weaker 6% are, and the textbook 3+ reads 2+ (docs/validation.md)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_right_call_survives_what_another_scan_changes(shared_data, tmp_path, case):
    name, crop, mpp, organ, want = CASES[case]
    rgb = imread(shared_data / name)[crop][..., :3]
    got = {}
    for change, stated in CHANGES:
        path = tmp_path / f"{change}-{stated}.png"
        imsave(path, _perturbed(rgb, change), check_contrast=False)
        report = score_slide(path, mpp=mpp * stated, organ=organ)
        got[f"{change} at {stated:g} x µm/px"] = report.call.score
        report.slide.close()
    known = {change for c, change in KNOWN if c == case}
    assert all(score == want for change, score in got.items() if change not in known), got
    assert all(got[change] != want for change in known), (got, "remove it from KNOWN")
