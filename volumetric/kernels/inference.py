"""Running a model on a batch of windows cut from one block's input.

Windows are always handled as ``(C, z, y, x)`` (or ``(C, y, x)`` for 2D
volumes); axes where the window has size 1 are squeezed before the model
sees them, so a ``1, 256, 256`` window feeds a 2D network ``(N, C, Y, X)``
and a ``64, 64, 64`` window a 3D one ``(N, C, Z, Y, X)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np

from volumetric.errors import InputError
from volumetric.geometry import Box

AMP_DTYPES = ("bf16", "fp16")


def gather_windows(
    image: np.ndarray, origin: Sequence[int], starts: Sequence[Sequence[int]],
    window: Sequence[int], *, pin: bool = False,
) -> Any:
    """Stack windows of ``image`` into a float32 tensor ``(N, C, *window)``.

    Parameters
    ----------
    image : ndarray
        ``(C, *spatial)`` input covering the box that starts at ``origin``.
    origin : tuple of int
        Volume coordinates of ``image[:, 0, 0, 0]``.
    starts : sequence of tuple of int
        Volume coordinates of the windows' first voxels.
    window : tuple of int
        Window shape.
    pin : bool
        Return page-locked memory (fast, asynchronous copies to a GPU).
    """
    import torch

    batch = torch.empty((len(starts), image.shape[0], *window), dtype=torch.float32,
                        pin_memory=pin)
    outer = Box.from_shape(image.shape[1:], origin)
    for i, start in enumerate(starts):
        index = Box.from_shape(window, start).relative_to(outer)
        batch[i] = torch.from_numpy(image[(slice(None), *index)])
    return batch


def autocast_for(device: str, amp: str | None) -> Any:
    """The mixed-precision context of ``amp`` (see :data:`AMP_DTYPES`) on ``device``, or none."""
    import torch

    if amp is None:
        return nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    return torch.autocast(torch.device(device).type, dtype=dtype)


def run_model(
    model: Any, batch: Any, *, device: str = "cpu", amp: str | None = None,
    out_channels: int | None = None,
) -> Any:
    """Run ``model`` on a window batch and return its output as ``(N, C_out, *window)``.

    Parameters
    ----------
    model : torch.nn.Module
        The network, already on ``device``.
    batch : torch.Tensor
        ``(N, C, *window)`` float32 windows (on the CPU).
    device : str
        Torch device of the model.
    amp : {"bf16", "fp16"}, optional
        Mixed precision (autocast) dtype.
    out_channels : int, optional
        Channels the output must have.

    Raises
    ------
    InputError
        When the output's shape is not the window's with a channel axis.
    """
    import torch

    window = tuple(batch.shape[2:])
    squeezed = tuple(2 + i for i, w in enumerate(window) if w == 1)
    x = batch.to(device, non_blocking=True)
    if squeezed:
        x = x.squeeze(squeezed)
    with torch.inference_mode(), autocast_for(device, amp):
        out = model(x)
    if not isinstance(out, torch.Tensor):
        raise InputError(f"the model returned {type(out).__name__}, not a tensor")
    if out.ndim != x.ndim or out.shape[0] != x.shape[0] or out.shape[2:] != x.shape[2:]:
        raise InputError(
            f"the model returned shape {tuple(out.shape)} for input windows of shape "
            f"{tuple(x.shape)}; its output must keep the window's spatial shape"
        )
    if out_channels is not None and out.shape[1] != out_channels:
        raise InputError(f"the model returned {out.shape[1]} channels, expected {out_channels}")
    for axis in squeezed:
        out = out.unsqueeze(axis)
    return out
