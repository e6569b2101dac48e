"""Losses against MONAI and hand references; metrics against skimage and numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss, DiceLoss, SoftDiceclDiceLoss
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from volumetric.errors import InputError
from volumetric.kernels import metrics
from volumetric.train.losses import LOSSES, get_loss, soft_skeleton


@pytest.fixture(params=[(2, 1, 9, 10, 11), (3, 2, 12, 13)], ids=["3d", "2d"])
def pair(request):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(*request.param, generator=g) * 2
    target = (torch.rand(*request.param, generator=g) > 0.7).float()
    return logits, target


def test_dice_matches_monai(pair):
    logits, target = pair
    torch.testing.assert_close(get_loss("dice").function(logits, target),
                               DiceLoss(sigmoid=True)(logits, target))


def test_bce_dice_matches_monai(pair):
    # MONAI switches to softmax cross-entropy for several channels; compare one channel.
    logits, target = pair[0][:, :1], pair[1][:, :1]
    torch.testing.assert_close(get_loss("bce-dice").function(logits, target),
                               DiceCELoss(sigmoid=True)(logits, target))
    both = get_loss("bce").function(*pair) + get_loss("dice").function(*pair)
    torch.testing.assert_close(get_loss("bce-dice").function(*pair), both)


def test_cldice_matches_monai(pair):
    logits, target = pair
    torch.testing.assert_close(get_loss("cldice").function(logits, target),
                               SoftDiceclDiceLoss(sigmoid=True)(logits, target))


def test_log_dice_and_bce_by_hand(pair):
    logits, target = pair
    p = torch.sigmoid(logits).double()
    t = target.double()
    axes = tuple(range(2, p.dim()))
    dice = (2 * (p * t).sum(axes) + 1e-5) / (p.sum(axes) + t.sum(axes) + 1e-5)
    assert float(get_loss("log-dice").function(logits, target)) == pytest.approx(
        float((-dice.log()).mean()), rel=1e-5)
    bce = -(t * p.log() + (1 - t) * (1 - p).log()).mean()
    assert float(get_loss("bce").function(logits, target)) == pytest.approx(float(bce), rel=1e-5)
    assert float(get_loss("mse").function(logits, target)) == pytest.approx(
        float(((logits.double() - t) ** 2).mean()), rel=1e-5)


def test_soft_skeleton_of_a_bar_is_its_centre_line():
    bar = torch.zeros(1, 1, 9, 20)
    bar[..., 3:6, 2:18] = 1
    skeleton = soft_skeleton(bar, iterations=3)[0, 0]
    assert skeleton[4, 4:16].min() > 0.5
    assert skeleton[[3, 5], 4:16].max() == 0


def test_perfect_prediction_has_low_mask_loss(pair):
    _, target = pair
    perfect = (target * 2 - 1) * 20
    for name in ("dice", "log-dice", "bce", "bce-dice", "cldice"):
        assert float(get_loss(name).function(perfect, target)) < 1e-3, name


def test_losses_give_gradients(pair):
    logits, target = pair
    for loss in LOSSES.values():
        x = logits.clone().requires_grad_()
        loss.function(x, target).backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, loss.name


def test_target_range_check():
    get_loss("mse").check_target(-3, 100, "the target (float32)")
    get_loss("bce").check_target(0, 1, "the target (uint8)")
    with pytest.raises(InputError, match=r"the target \(float32\) has values in \[0, 10\]"):
        get_loss("bce").check_target(0, 10, "the target (float32)")
    with pytest.raises(InputError, match="unknown loss"):
        get_loss("focal")


def test_mask_metrics_by_hand():
    rng = np.random.default_rng(0)
    p, t = rng.random((5, 6, 7)) > 0.5, rng.random((5, 6, 7)) > 0.6
    tp, fp, fn = (p & t).sum(), (p & ~t).sum(), (~p & t).sum()
    assert metrics.dice(p, t) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    iou = metrics.iou(torch.from_numpy(p), torch.from_numpy(t))
    assert iou == pytest.approx(tp / (tp + fp + fn))
    assert metrics.precision(p, t) == pytest.approx(tp / (tp + fp))
    assert metrics.recall(p, t) == pytest.approx(tp / (tp + fn))
    empty = np.zeros((3, 3), bool)
    assert metrics.dice(empty, empty) == 1.0
    assert metrics.recall(empty, ~empty) == 0.0


@pytest.mark.parametrize("shape", [(24, 31), (9, 14, 11)])
def test_image_metrics_match_skimage(shape):
    rng = np.random.default_rng(2)
    ref = rng.random(shape)
    img = np.clip(ref + 0.1 * rng.standard_normal(shape), 0, 1)
    assert metrics.mse(img, ref) == pytest.approx(mean_squared_error(ref, img))
    assert metrics.psnr(img, ref, data_range=1.0) == pytest.approx(
        peak_signal_noise_ratio(ref, img, data_range=1.0))
    assert metrics.ssim(img, ref, data_range=1.0) == pytest.approx(
        structural_similarity(ref, img, data_range=1.0), abs=1e-9)
    assert metrics.psnr(ref, ref, data_range=1.0) == math.inf


def test_ssim_batched_is_the_mean_of_single_images():
    rng = np.random.default_rng(3)
    ref = rng.random((2, 1, 10, 12))
    img = ref + 0.2 * rng.standard_normal(ref.shape)
    single = [structural_similarity(ref[i, 0], img[i, 0], data_range=2.0) for i in range(2)]
    assert metrics.ssim(torch.from_numpy(img), torch.from_numpy(ref), data_range=2.0) == (
        pytest.approx(np.mean(single)))
    with pytest.raises(ValueError, match=">= 7"):
        metrics.ssim(img[..., :5], ref[..., :5], data_range=1.0)


def test_mask_restricts_the_loss(pair):
    logits, target = pair
    g = torch.Generator().manual_seed(4)
    mask = (torch.rand(logits.shape[0], 1, *logits.shape[2:], generator=g) > 0.5).float()
    inside = mask.expand_as(logits).bool()
    mse, bce = get_loss("mse").function, get_loss("bce").function
    torch.testing.assert_close(mse(logits, target, mask),
                               ((logits - target) ** 2)[inside].mean())
    torch.testing.assert_close(
        bce(logits, target, mask),
        torch.nn.functional.binary_cross_entropy_with_logits(logits[inside], target[inside]))
    # Outside the mask neither prediction nor target matter.
    changed = torch.where(inside, logits, -logits * 3)
    flipped = torch.where(inside, target, 1 - target)
    for loss in LOSSES.values():
        torch.testing.assert_close(loss.function(changed, flipped, mask),
                                   loss.function(logits, target, mask), msg=loss.name)
