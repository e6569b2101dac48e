"""A PNG gallery of training patches and their (augmented) targets, for a person to check."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from volumetric.errors import InputError
from volumetric.io.destination import claim_file, replacing
from volumetric.kernels.augment import AugmentConfig, AugmentParams
from volumetric.ops.common import default_patch
from volumetric.train.dataset import PatchDataset, VolumePair

COLUMNS = 4  # samples per row; each sample takes two panels


def _describe(index: int, location: Sequence[int], params: AugmentParams | None) -> str:
    _, z, y, x = location
    text = f"#{index} at z{z} y{y} x{x}"
    if params is None:
        return text
    changes = []
    flipped = "".join(a for a, f in zip("zyx"[-len(params.flips):], params.flips) if f)
    if flipped:
        changes.append(f"flip {flipped}")
    if params.quarter_turns:
        changes.append(f"rot {90 * params.quarter_turns}")
    if params.warps:
        changes.append("warp")
    if params.scale != 1.0 or params.noise_std:
        changes.append("intensity")
    return text + ("\n" + ", ".join(changes) if changes else "")


def _middle(array: np.ndarray) -> np.ndarray:
    """Channel 0 of a (C, Y, X) or (C, Z, Y, X) patch; its middle z slice for 3D."""
    plane = array[0]
    return plane[plane.shape[0] // 2] if plane.ndim == 3 else plane


def patch_gallery(
    raw: str,
    target: str,
    out: str | Path,
    *,
    mask: str | None = None,
    patch: Sequence[int] | None = None,
    n: int = 16,
    sampler: str = "random",
    foreground_probability: float = 0.5,
    foreground: str = ">0",
    augment: bool = True,
    augment_off: Sequence[str] = (),
    augmentation: AugmentConfig = AugmentConfig(),
    seed: int = 0,
    cubes: str | None = None,
    t: int = 0,
    channel: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Draw ``n`` patches as the training loader would and save them as one PNG.

    Each sample shows the image (middle z slice of 3D patches, channel 0)
    with the target overlaid, and the target alone next to it, titled with
    its location and the augmentations drawn.

    Parameters
    ----------
    raw, target : str
        OME-Zarr images (see :class:`volumetric.train.dataset.VolumePair`).
    out : str or Path
        The PNG to write.
    mask : str, optional
        Loss mask; voxels outside it are greyed on the target panel.
    patch : (z, y, x), optional
        Patch shape; see :func:`default_patch`.
    n : int
        Number of samples.
    sampler, foreground_probability, foreground, seed, cubes
        As for :class:`volumetric.train.dataset.PatchDataset`.
    augment : bool
        Apply ``augmentation``.
    augment_off : sequence of str
        Augmentations switched off (see :meth:`AugmentConfig.without`).
    augmentation : AugmentConfig
        Which augmentations, how strong.
    t, channel : int
        Time point and raw channel.
    overwrite : bool
        Replace an existing ``out``.

    Returns
    -------
    dict
        ``path``, ``samples`` and ``patch``.
    """
    # The figure API, not pyplot: no backend switch, so a notebook's inline plots keep working.
    from matplotlib.figure import Figure

    out = claim_file(out, inputs=(raw, target, mask, cubes), overwrite=overwrite,
                     suffixes=(".png",), what="gallery")
    if n < 1:
        raise InputError(f"--n {n} must be at least 1")
    patch = tuple(patch) if patch is not None else default_patch(raw)
    dataset = PatchDataset(
        [VolumePair(raw, target, mask, t=t, channel=channel)], patch, sampler=sampler,
        foreground_probability=foreground_probability, foreground=foreground,
        augment=augmentation.without(augment_off) if augment else None, seed=seed,
        samples_per_epoch=None if sampler == "grid" else n, cubes=cubes,
    )
    n = min(n, len(dataset))  # the grid shows each tile at most once
    rows = -(-n // COLUMNS)
    cols = 2 * min(n, COLUMNS)
    fig = Figure(figsize=(2.2 * cols, 2.9 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        item = dataset[i]
        image, label = _middle(item["image"].numpy()), _middle(item["target"].numpy())
        low, high = np.percentile(image, (1, 99))
        row, col = divmod(i, COLUMNS)
        left, right = axes[row, 2 * col], axes[row, 2 * col + 1]
        left.imshow(image, cmap="gray", vmin=low, vmax=high if high > low else low + 1)
        values, counts = np.unique(label, return_counts=True)
        shown = np.ma.masked_where(label == values[np.argmax(counts)], label)  # background off
        left.imshow(shown, cmap="autumn", alpha=0.45, interpolation="nearest")
        right.imshow(label, cmap="viridis", interpolation="nearest")
        if "mask" in item:
            outside = _middle(item["mask"].numpy()) == 0
            right.imshow(np.ma.masked_where(~outside, outside), cmap="gray", alpha=0.6)
        left.set_title(_describe(i, item["location"].tolist(), dataset.plan(i).augment),
                       fontsize=7, loc="left")
        right.set_title(f"target {label.min():.3g}..{label.max():.3g}", fontsize=7)
    augmented = "not augmented"
    if augment:
        augmented = f"augmented without {', '.join(augment_off)}" if augment_off else "augmented"
    fig.suptitle(f"{Path(raw).name} / {Path(target).name}: {n} patches {patch}, sampler "
                 f"{sampler}, {augmented}, seed {seed}", fontsize=9)
    fig.tight_layout()
    with replacing([out], overwrite=overwrite) as (tmp,):
        fig.savefig(tmp, dpi=90)
    return {"path": str(out), "samples": n, "patch": list(patch)}
