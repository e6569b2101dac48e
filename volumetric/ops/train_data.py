"""The patch datasets of a ``vol train`` run: training volumes and validation by split or pair."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from volumetric.errors import InputError
from volumetric.train.dataset import PatchDataset, VolumePair
from volumetric.train.splits import parse_time_points
from volumetric.train.volumes import check_consistent

if TYPE_CHECKING:
    from volumetric.ops.train import DataSettings


def volume_pairs(data: DataSettings) -> list[VolumePair]:
    """``raw``/``target``/``mask`` and each of ``pairs``, sampled at the ``t`` time points."""
    times = parse_time_points(data.t)
    return [VolumePair(data.raw, data.target, data.mask, times),
            *(VolumePair(*pair, t=times) for pair in data.pairs)]


def patch_datasets(data: DataSettings, pairs: list[VolumePair], patch: Sequence[int], *,
                   seed: int, batch: int, augment: Any,
                   target: Any = None) -> tuple[PatchDataset, PatchDataset | None]:
    """The training dataset and the validation one (None with ``val_fraction`` 0 and no ``val``).

    ``target`` is the :class:`~volumetric.train.targets.TargetTransform` (binarising
    masks and labels, normalising images) that both datasets apply.

    Raises
    ------
    InputError
        A patch that does not fit (a 3D patch and a 2D validation image), a
        split that cannot hold one, or a validation pair whose channels or
        mask differ from the training volumes'.
    """
    if len(data.pair_cubes) > len(data.pairs):
        raise InputError(f"{len(data.pair_cubes)} --pair-cubes for {len(data.pairs)} --pair "
                         "volumes; give at most one cube list per --pair, in order")
    listed = [data.cubes, *data.pair_cubes]
    cubes = None if not any(listed) else listed + [None] * (1 + len(data.pairs) - len(listed))
    common = {"sampler": data.sampler, "foreground_probability": data.foreground_probability,
              "foreground": data.foreground, "seed": seed, "cubes": cubes,
              "normalize": data.normalize, "val_fraction": data.val_fraction,
              "val_split": data.val_split, "target": target}
    split = data.val_fraction > 0 and data.val is None
    train_set = PatchDataset(pairs, patch, augment=augment, split="train" if split else None,
                             samples_per_epoch=data.steps_per_epoch * batch, **common)
    validation = {**common, "sampler": "random" if data.sampler == "grid" else data.sampler,
                  "seed": seed + 1, "samples_per_epoch": data.val_patches}
    if data.val is not None:
        val_pair = VolumePair(*data.val, t=parse_time_points(data.t))
        val_set = PatchDataset([val_pair], patch, **{**validation, "cubes": None})
        check_consistent(train_set.images + val_set.images)
        return train_set, val_set
    if split:
        return train_set, PatchDataset(pairs, patch, split="val", **validation)
    return train_set, None
