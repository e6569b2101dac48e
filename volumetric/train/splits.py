"""Training and validation regions: a slab, whole planes, whole time points or whole volumes.

A pair is sampled over ``(t, [z,] y, x)``: its selected time points, then
its spatial axes; patches are one time point deep. Validation takes the last
part of one axis (``fraction``: the longest spatial axis, ``planes``: z,
``t``: the time points) or the last volumes (``volume``), so no training
patch overlaps a validation patch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from volumetric.errors import InputError, check_choice
from volumetric.geometry import Box

SPLITS = ("train", "val")
SPLIT_MODES = ("auto", "fraction", "planes", "t", "volume")
TIME_SYNTAX = "give time points like 0:10 (0 to 9), 3 or 0,4,7"


def parse_time_points(spec: str | int | Sequence[int] | None) -> tuple[int, ...] | None:
    """``--t`` as time points: indices and ``A:B`` ranges (``B`` excluded), comma-separated.

    ``"0:10"`` is time points 0 to 9, ``"0,4,7"`` three of them; None (every
    time point) and integer sequences pass through.
    """
    if spec is None:
        return None
    if isinstance(spec, int):
        return (spec,)
    if not isinstance(spec, str):
        return tuple(int(t) for t in spec)
    found: list[int] = []
    for item in spec.replace(" ", "").split(","):
        try:
            if ":" in item:
                first, stop = item.split(":")
                found += range(int(first), int(stop))
            else:
                found.append(int(item))
        except ValueError:
            raise InputError(f"--t {spec!r}: {TIME_SYNTAX}") from None
    if not found:
        raise InputError(f"--t {spec!r} selects no time point: {TIME_SYNTAX}")
    return tuple(dict.fromkeys(found))


def choose_split(mode: str, shapes: Sequence[tuple[int, ...]], flat: bool) -> str:
    """``auto`` resolved: whole planes (z-stacks) or time points for 2D patches, else a slab.

    ``shapes`` are the sampled ``(t, [z,] y, x)`` shapes; ``flat`` whether
    patches are 2D.
    """
    check_choice(mode, SPLIT_MODES, "--val-split")
    if mode != "auto":
        return mode
    if flat and any(len(s) == 4 and s[1] > 1 for s in shapes):
        return "planes"
    if flat and any(s[0] > 1 for s in shapes):
        return "t"
    return "fraction"


def _whole_units(n: int, fraction: float) -> int:
    """Validation planes, time points or volumes: at least one, leaving one to train."""
    return min(n - 1, max(1, int(round(n * fraction))))


def split_region(shape: Sequence[int], patch: Sequence[int], split: str, mode: str,
                 fraction: float, *, name: str) -> Box:
    """The train or validation part of one ``(t, [z,] y, x)`` volume (mode other than volume).

    Raises
    ------
    InputError
        When the volume has no axis for ``mode`` or a part is thinner than the patch.
    """
    spatial = "zyx"[-(len(shape) - 1):]
    if mode == "planes":
        if spatial[0] != "z":
            raise InputError(f"{name}: --val-split planes needs a stack of planes (z), "
                             "not a 2D image")
        axis, unit = 1, "planes"
    elif mode == "t":
        axis, unit = 0, "time points"
    else:
        axis = 1 + int(np.argmax(shape[1:]))
        unit = f"voxels along {spatial[axis - 1]}"
    n = shape[axis]
    n_val = int(round(n * fraction)) if mode == "fraction" else _whole_units(n, fraction)
    size = n_val if split == "val" else n - n_val
    if size < patch[axis]:
        raise InputError(f"{name}: the {split} region ({mode}) is {size} {unit} "
                         f"(val fraction {fraction} of {n}), fewer than the patch's {patch[axis]}")
    start, stop = [0] * len(shape), list(shape)
    if split == "val":
        start[axis] = n - n_val
    else:
        stop[axis] = n - n_val
    return Box(tuple(start), tuple(stop))


def split_regions(shapes: Sequence[tuple[int, ...]], patches: Sequence[tuple[int, ...]],
                  split: str | None, mode: str, fraction: float,
                  names: Sequence[str]) -> list[Box | None]:
    """Each volume's region of ``split`` (None: the volume is not in it; whole without split).

    Raises
    ------
    InputError
        A part that cannot hold a patch; the message names the modes that would.
    """
    if split is None:
        return [Box.from_shape(s) for s in shapes]
    check_choice(split, SPLITS, "split")
    if not 0 < fraction < 1:
        raise InputError(f"--val-fraction {fraction} must lie strictly between 0 and 1")
    try:
        if mode == "volume":
            if len(shapes) < 2:
                raise InputError("--val-split volume needs two volumes or more (--pair)")
            first_val = len(shapes) - _whole_units(len(shapes), fraction)
            kept = range(first_val, len(shapes)) if split == "val" else range(first_val)
            return [Box.from_shape(s) if i in kept else None for i, s in enumerate(shapes)]
        return [split_region(s, p, split, mode, fraction, name=n)
                for s, p, n in zip(shapes, patches, names)]
    except InputError as exc:
        others = [m for m in SPLIT_MODES[1:]
                  if m != mode and _holds(shapes, patches, m, fraction)]
        advice = (" or ".join(f"--val-split {m}" for m in others) + " would hold it" if others
                  else f"no --val-split holds it at --val-fraction {fraction}: change "
                       "--val-fraction or give a validation pair --val RAW,TARGET")
        raise InputError(f"{exc}; {advice}") from None


def _holds(shapes: Sequence[tuple[int, ...]], patches: Sequence[tuple[int, ...]],
           mode: str, fraction: float) -> bool:
    """Whether both parts of every volume hold a patch with ``mode``."""
    if mode == "volume":
        return len(shapes) >= 2
    try:
        for split in SPLITS:
            for shape, patch in zip(shapes, patches):
                split_region(shape, patch, split, mode, fraction, name="")
    except InputError:
        return False
    return True
