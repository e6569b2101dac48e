"""Read the cube lists written by ``vol discover``.

A cube list is a JSON object with at least ``cube_shape`` (``[z, y, x]``, or
``[y, x]`` for 2D images) and ``cubes``: a list of cube indices, where cube
``[i, j, k]`` covers voxels ``i * cube_z .. (i + 1) * cube_z - 1`` along z,
and so on (the last cubes are clipped to the volume).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from volumetric.errors import InputError
from volumetric.geometry import BlockGrid, Box


@dataclass(frozen=True)
class CubeList:
    """Cube indices on a regular grid of ``cube_shape`` cubes."""

    cube_shape: tuple[int, ...]
    cubes: tuple[tuple[int, ...], ...]
    source: str = "cube list"

    def boxes(self, shape: Sequence[int]) -> list[Box]:
        """The voxel boxes of the cubes in a volume of spatial ``shape``.

        Raises
        ------
        InputError
            When the cubes do not match the volume's dimensions or lie outside it.
        """
        shape = tuple(int(s) for s in shape)
        if len(self.cube_shape) != len(shape):
            raise InputError(
                f"{self.source} has {len(self.cube_shape)}D cubes but the volume is "
                f"{len(shape)}D ({shape})"
            )
        grid = BlockGrid(shape, self.cube_shape)
        try:
            return [grid.box(cube) for cube in self.cubes]
        except (IndexError, ValueError):
            raise InputError(
                f"{self.source} lists cubes outside the volume of shape {shape} "
                f"(cube shape {self.cube_shape}, grid {grid.grid_shape})"
            ) from None


def read_cubes(path: str | Path) -> CubeList:
    """Read a cube list JSON file.

    Parameters
    ----------
    path : str or Path
        A file written by ``vol discover``.

    Returns
    -------
    CubeList

    Raises
    ------
    InputError
        When the file is missing, not JSON, or lacks ``cube_shape``/``cubes``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read cube list {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise InputError(f"cube list {path} is not JSON: {exc}") from None
    try:
        cube_shape = tuple(int(v) for v in data["cube_shape"])
        cubes = tuple(tuple(int(v) for v in cube) for cube in data["cubes"])
    except (KeyError, TypeError, ValueError):
        raise InputError(
            f"cube list {path} needs 'cube_shape' ([z, y, x]) and 'cubes' (a list of [i, j, k])"
        ) from None
    if not cube_shape or any(c <= 0 for c in cube_shape):
        raise InputError(f"cube list {path}: cube_shape {list(cube_shape)} must be positive")
    if any(len(cube) != len(cube_shape) for cube in cubes):
        raise InputError(f"cube list {path}: every cube needs {len(cube_shape)} indices")
    return CubeList(cube_shape, cubes, source=f"cube list {path}")
