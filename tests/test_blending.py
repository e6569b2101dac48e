"""Window weights against MONAI, fp32 accumulation, post-processing and the overlay kernel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from volumetric.geometry import Box
from volumetric.kernels.blending import (
    Accumulator,
    normalize_sums,
    postprocess,
    window_weights,
)
from volumetric.kernels.overlay import overlay, structure_weight


@pytest.mark.parametrize("window", [(16, 16, 16), (1, 24, 20), (7, 9, 1), (3,), (64, 32)])
@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_weights_match_monai_importance_map(window, mode):
    from monai.data.utils import compute_importance_map

    expected = compute_importance_map(window, mode=mode, sigma_scale=0.125).numpy()
    weights = window_weights(window, mode)
    assert weights.dtype == np.float32 and weights.shape == window
    np.testing.assert_allclose(weights, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("mode", ["gaussian", "hann", "constant"])
def test_weights_are_never_zero_and_symmetric(mode):
    weights = window_weights((9, 12, 5), mode)
    assert weights.min() >= 1e-3
    np.testing.assert_allclose(weights, weights[::-1, ::-1, ::-1], rtol=1e-6)


def test_hann_peaks_in_the_middle():
    weights = window_weights((1, 16), "hann")[0]
    assert weights.argmax() in (7, 8) and weights[0] < 0.02


def test_accumulator_clips_windows_to_its_box_and_normalises():
    weights = window_weights((4, 4), "gaussian")
    acc = Accumulator(Box((0, 0), (6, 5)), 1, weights)
    outputs = torch.stack([torch.full((1, 4, 4), 2.0), torch.full((1, 4, 4), 4.0)])
    acc.add(outputs, [(-1, 0), (2, 2)])
    sums, finite = acc.result()
    assert finite and sums.shape == (2, 6, 5)
    pred, covered = normalize_sums(sums)
    assert pred[0, 0, 0] == pytest.approx(2.0) and pred[0, 5, 4] == pytest.approx(4.0)
    assert 2.0 < pred[0, 2, 2] < 4.0
    assert not covered[3, 0] and pred[0, 3, 0] == 0.0
    assert sums[1, 0, 0] == pytest.approx(weights[1, 0])


def test_accumulator_reports_nonfinite_outputs():
    acc = Accumulator(Box((0,), (4,)), 1, window_weights((4,), "constant"))
    acc.add(torch.tensor([[[0.0, float("nan"), 1.0, 1.0]]]), [(0,)])
    assert acc.result()[1] is False


def test_postprocess():
    pred = np.array([-0.2, 0.0, 0.5, 0.9, 3.0], dtype=np.float32)
    np.testing.assert_array_equal(postprocess(pred, dtype="uint8"), [0, 0, 128, 230, 255])
    np.testing.assert_array_equal(postprocess(pred, threshold=0.5), [0, 0, 0, 1, 1])
    np.testing.assert_allclose(postprocess(pred, clip=1.0), [0, 0, 0.5, 0.9, 1.0])
    assert postprocess(pred, dtype="float16").dtype == np.float16


def test_overlay_grey_and_rgb():
    raw = np.array([0.0, 0.5, 1.0, 2.0], dtype=np.float32)
    distance = np.array([10.0, 2.0, 0.0, -1.0], dtype=np.float32)
    weights = structure_weight(distance, kind="distance", clip=4.0, power=2.0)
    np.testing.assert_allclose(weights, [0.0, 0.25, 1.0, 1.0])
    total = np.clip(raw, 0, 1) + weights  # peak 2.0 on the structure
    grey = overlay(raw, weights, peak=float(total.max()))
    np.testing.assert_array_equal(grey, np.rint(total / 2.0 * 65535).astype(np.uint16))
    assert grey.max() == 65535 and grey[2] > grey[0]
    rgb = overlay(raw, weights, peak=float(total.max()), rgb=True)
    assert rgb.shape == (3, 4) and rgb.dtype == np.uint16
    np.testing.assert_array_equal(rgb[1], grey)  # the weights on green
    np.testing.assert_array_equal(rgb[0], rgb[2])
    np.testing.assert_array_equal(rgb[0], np.rint(np.clip(raw, 0, 1) / 2.0 * 65535))