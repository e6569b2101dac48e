"""Training losses for masks (on logits) and for continuous targets.

=============  ==========================================  ===============  ============
name           loss                                        network output   target
=============  ==========================================  ===============  ============
``mse``        mean squared error                          any value        any value
``bce``        binary cross-entropy                        logits           [0, 1]
``dice``       1 - soft Dice (per sample and channel)      logits           [0, 1]
``log-dice``   mean of -log(soft Dice)                     logits           [0, 1]
``bce-dice``   BCE + Dice                                  logits           [0, 1]
``cldice``     0.5 Dice + 0.5 soft clDice (Shit et al.)    logits           [0, 1]
``grid``       grid loss of a geometric matcher            transformation   grid points
=============  ==========================================  ===============  ============

Mask losses apply the sigmoid themselves, so the trained network ends in
logits; its checkpoint and TorchScript export add the sigmoid
(:attr:`Loss.output_activation`). The soft Dice and clDice follow MONAI's
``DiceLoss`` and ``SoftDiceclDiceLoss`` definitions (same smoothing terms).
``cldice`` suits thin, linear structures such as neurites and vessels.
``grid`` is the loss of ``vol train-matcher``
(:func:`volumetric.models.matching.grid_distance`): the network outputs the
parameters of a transformation, the target holds where the true one moves
the loss grid's points.

Every loss takes an optional loss ``mask`` (broadcast over channels): only
voxels where it is nonzero count (mask losses see prediction and target
zeroed outside it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from volumetric.errors import InputError, check_choice


def soft_dice(probabilities: torch.Tensor, target: torch.Tensor, *, smooth_nr: float = 1e-5,
              smooth_dr: float = 1e-5) -> torch.Tensor:
    """Soft Dice coefficient per sample and channel, shape ``(N, C)``.

    ``(2 |P T| + smooth_nr) / (|P| + |T| + smooth_dr)`` over the spatial axes.
    """
    axes = tuple(range(2, probabilities.dim()))
    intersection = (probabilities * target).sum(axes)
    total = probabilities.sum(axes) + target.sum(axes)
    return (2 * intersection + smooth_nr) / (total + smooth_dr)


def _erode(x: torch.Tensor) -> torch.Tensor:
    """Soft erosion: the minimum over a 3-voxel cross, axis by axis."""
    dims = x.dim() - 2
    pool = F.max_pool3d if dims == 3 else F.max_pool2d
    eroded = []
    for axis in range(dims):
        kernel = tuple(3 if a == axis else 1 for a in range(dims))
        padding = tuple(1 if a == axis else 0 for a in range(dims))
        eroded.append(-pool(-x, kernel, 1, padding))
    return torch.stack(eroded).amin(0)


def _dilate(x: torch.Tensor) -> torch.Tensor:
    pool = F.max_pool3d if x.dim() == 5 else F.max_pool2d
    return pool(x, 3, 1, 1)


def soft_skeleton(x: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Differentiable skeleton of soft masks ``(N, C, *spatial)`` by iterated soft opening."""
    skeleton = F.relu(x - _dilate(_erode(x)))
    for _ in range(iterations):
        x = _erode(x)
        delta = F.relu(x - _dilate(_erode(x)))
        skeleton = skeleton + F.relu(delta - skeleton * delta)
    return skeleton


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return values.mean()
    weights = mask.expand_as(values)
    return (values * weights).sum() / weights.sum().clamp_min(1)


def _probabilities(logits: torch.Tensor, target: torch.Tensor,
                   mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid of the logits, and both zeroed outside the mask."""
    probabilities = torch.sigmoid(logits.float())
    if mask is None:
        return probabilities, target
    return probabilities * mask, target * mask


def mse_loss(output: torch.Tensor, target: torch.Tensor,
             mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error (distance maps, continuous images)."""
    return _masked_mean((output.float() - target) ** 2, mask)


def bce_loss(logits: torch.Tensor, target: torch.Tensor,
             mask: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy on logits, averaged over all voxels."""
    return _masked_mean(
        F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none"), mask
    )


def dice_loss(logits: torch.Tensor, target: torch.Tensor,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """``1 - soft Dice``, averaged over samples and channels (MONAI ``DiceLoss(sigmoid=True)``)."""
    return 1 - soft_dice(*_probabilities(logits, target, mask)).mean()


def log_dice_loss(logits: torch.Tensor, target: torch.Tensor,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """``-log(soft Dice)`` averaged over samples and channels (steeper than Dice at poor overlap)."""
    return -torch.log(soft_dice(*_probabilities(logits, target, mask))).mean()


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """BCE plus Dice loss (MONAI ``DiceCELoss(sigmoid=True)``)."""
    return bce_loss(logits, target, mask) + dice_loss(logits, target, mask)


def cldice_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                *, alpha: float = 0.5, iterations: int = 3, smooth: float = 1.0) -> torch.Tensor:
    """``(1 - alpha) Dice + alpha clDice`` (MONAI ``SoftDiceclDiceLoss(sigmoid=True)``).

    clDice compares each mask with the other's soft skeleton (topology
    precision and sensitivity), which rewards keeping thin structures connected.
    """
    probabilities, target = _probabilities(logits, target, mask)
    dice = 1 - soft_dice(probabilities, target, smooth_nr=smooth, smooth_dr=smooth).mean()
    axes = tuple(range(1, probabilities.dim()))
    skeleton_pred = soft_skeleton(probabilities, iterations)
    skeleton_true = soft_skeleton(target, iterations)
    precision = ((skeleton_pred * target).sum(axes) + smooth) / (skeleton_pred.sum(axes) + smooth)
    sensitivity = (((skeleton_true * probabilities).sum(axes) + smooth)
                   / (skeleton_true.sum(axes) + smooth))
    cldice = 1 - 2 * precision * sensitivity / (precision + sensitivity + 1e-4)
    return (1 - alpha) * dice + alpha * cldice.mean()


def grid_points_loss(theta: torch.Tensor, target: torch.Tensor,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """Grid loss of predicted transformation parameters against true grid positions (no mask)."""
    from volumetric.models.matching import grid_distance

    return grid_distance(theta, target)


@dataclass(frozen=True)
class Loss:
    """A named loss with what it implies for the network output and the target."""

    name: str
    function: Callable[..., torch.Tensor]
    output_activation: str
    target_range: tuple[float, float] | None

    @property
    def for_masks(self) -> bool:
        """Mask losses are validated with Dice/IoU/precision/recall, others with MSE/PSNR/SSIM."""
        return self.target_range is not None

    def check_target(self, low: float, high: float, where: str) -> None:
        """Refuse target values (``low``..``high``) that do not suit this loss.

        ``where`` names what holds them in the message, e.g. ``"the target
        (uint8)"`` or ``"the target batch of epoch 2 step 40"``.

        Raises
        ------
        InputError
            Values outside :attr:`target_range`.
        """
        if self.target_range is None:
            return
        lo, hi = self.target_range
        if low < lo or high > hi:
            raise InputError(
                f"--loss {self.name} needs a target with values in [{lo:g}, {hi:g}] (a binary mask "
                f"or probabilities), but {where} has values in [{low:g}, {high:g}]; "
                "use --loss mse for distance maps and images, or binarise the target"
            )


_MASK = (0.0, 1.0)
LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (
        Loss("mse", mse_loss, "none", None),
        Loss("bce", bce_loss, "sigmoid", _MASK),
        Loss("dice", dice_loss, "sigmoid", _MASK),
        Loss("log-dice", log_dice_loss, "sigmoid", _MASK),
        Loss("bce-dice", bce_dice_loss, "sigmoid", _MASK),
        Loss("cldice", cldice_loss, "sigmoid", _MASK),
    )
}
# Not a voxel loss: the output and target are a transformation and grid points.
MATCHER_LOSSES: dict[str, Loss] = {"grid": Loss("grid", grid_points_loss, "none", None)}


def get_loss(name: str) -> Loss:
    """The loss called ``name``.

    Raises
    ------
    InputError
        Unknown name.
    """
    known = {**LOSSES, **MATCHER_LOSSES}
    check_choice(name, known, "loss")
    return known[name]
