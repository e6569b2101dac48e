"""Boxes and block grids in voxel coordinates.

Everything here is a small frozen value object with no third-party imports,
so kernels, I/O and the engine can share it freely. Coordinates are integer
voxel indices in the array's own axis order; physical units are applied by
the callers that know the voxel size.

A block task reads its *read box* (the write box grown by a halo and clipped
to the volume) and writes only its *write box*::

        volume
    +-----------------------------+
    |        read box             |
    |    +-------------------+    |
    |    | . . halo . . . .  |    |
    |    | .  +---------+  . |    |
    |    | .  |  write  |  . |    |
    |    | .  |   box   |  . |    |
    |    | .  +---------+  . |    |
    |    | . . . . . . . . . |    |
    |    +-------------------+    |
    +-----------------------------+

At the volume's faces the halo is clipped, so a read box is never larger
than the volume.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import product

Coord = tuple[int, ...]


def as_coord(values: int | Iterable[int], ndim: int | None = None) -> Coord:
    """Return ``values`` as a tuple of ints, broadcasting a scalar to ``ndim``.

    Parameters
    ----------
    values : int or iterable of int
        One value per axis, or one value for every axis.
    ndim : int, optional
        Number of axes; required to broadcast a scalar, checked otherwise.

    Returns
    -------
    tuple of int

    Examples
    --------
    >>> as_coord(2, 3)
    (2, 2, 2)
    >>> as_coord([1, 2, 3])
    (1, 2, 3)
    """
    if isinstance(values, int):
        if ndim is None:
            raise ValueError("a scalar needs ndim to be broadcast")
        return (int(values),) * ndim
    coord = tuple(int(v) for v in values)
    if ndim is not None and len(coord) != ndim:
        raise ValueError(f"expected {ndim} values, got {len(coord)}: {coord}")
    return coord


def ceil_div(a: int, b: int) -> int:
    """Integer ceiling of ``a / b`` for positive ``b``."""
    return -(-a // b)


@dataclass(frozen=True)
class Box:
    """An axis-aligned half-open box ``[start, stop)`` in voxel coordinates.

    Parameters
    ----------
    start, stop : tuple of int
        Inclusive lower and exclusive upper corner, one value per axis.

    Examples
    --------
    >>> b = Box((0, 10), (4, 20))
    >>> b.shape
    (4, 10)
    >>> b.grow(2).clip((100, 15))
    Box(start=(0, 8), stop=(6, 15))
    """

    start: Coord
    stop: Coord

    def __post_init__(self) -> None:
        start, stop = as_coord(self.start), as_coord(self.stop)
        if len(start) != len(stop):
            raise ValueError(f"start {start} and stop {stop} differ in length")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "stop", tuple(max(a, b) for a, b in zip(start, stop)))

    @classmethod
    def from_shape(cls, shape: Sequence[int], offset: Sequence[int] | None = None) -> Box:
        """Box of ``shape`` whose first corner is ``offset`` (the origin by default)."""
        offset = as_coord(offset if offset is not None else 0, len(shape))
        return cls(offset, tuple(o + s for o, s in zip(offset, shape)))

    @property
    def ndim(self) -> int:
        return len(self.start)

    @property
    def shape(self) -> Coord:
        return tuple(b - a for a, b in zip(self.start, self.stop))

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def empty(self) -> bool:
        return self.size == 0

    @property
    def slices(self) -> tuple[slice, ...]:
        """Slices selecting this box from an array that starts at the origin."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    def grow(self, before: int | Sequence[int], after: int | Sequence[int] | None = None) -> Box:
        """Grow by ``before`` voxels below and ``after`` (default: ``before``) above."""
        lo = as_coord(before, self.ndim)
        hi = lo if after is None else as_coord(after, self.ndim)
        return Box(
            tuple(a - g for a, g in zip(self.start, lo)),
            tuple(b + g for b, g in zip(self.stop, hi)),
        )

    def shift(self, offset: Sequence[int]) -> Box:
        """Translate by ``offset``."""
        offset = as_coord(offset, self.ndim)
        return Box(
            tuple(a + o for a, o in zip(self.start, offset)),
            tuple(b + o for b, o in zip(self.stop, offset)),
        )

    def intersect(self, other: Box) -> Box:
        """The overlap of two boxes (empty when they do not overlap)."""
        return Box(
            tuple(max(a, b) for a, b in zip(self.start, other.start)),
            tuple(min(a, b) for a, b in zip(self.stop, other.stop)),
        )

    def clip(self, shape: Sequence[int]) -> Box:
        """Intersect with the volume ``[0, shape)``."""
        return self.intersect(Box.from_shape(shape))

    def contains(self, other: Box) -> bool:
        """Whether ``other`` lies entirely inside this box."""
        return all(a <= c for a, c in zip(self.start, other.start)) and all(
            d <= b for b, d in zip(self.stop, other.stop)
        )

    def relative_to(self, outer: Box) -> tuple[slice, ...]:
        """Slices that select this box from an array holding ``outer``.

        Used to crop a kernel's output on the read box back to the write box.
        """
        if not outer.contains(self):
            raise ValueError(f"{self} is not inside {outer}")
        return tuple(
            slice(a - o, b - o) for a, b, o in zip(self.start, self.stop, outer.start)
        )

    def key(self) -> str:
        """A short stable name of the whole box, e.g. ``"0.64.128-8.128.192"`` (start-stop)."""
        return ".".join(str(a) for a in self.start) + "-" + ".".join(str(b) for b in self.stop)

    def __str__(self) -> str:
        return "[" + ", ".join(f"{a}:{b}" for a, b in zip(self.start, self.stop)) + "]"


@dataclass(frozen=True)
class BlockGrid:
    """A regular grid of write boxes tiling ``[0, shape)``; the last ones may be ragged.

    Parameters
    ----------
    shape : tuple of int
        Volume shape.
    block : tuple of int
        Block shape (usually a multiple of the output's chunk or shard shape).

    Examples
    --------
    >>> g = BlockGrid((10, 7), (4, 4))
    >>> g.grid_shape
    (3, 2)
    >>> g.box((2, 1))
    Box(start=(8, 4), stop=(10, 7))
    """

    shape: Coord
    block: Coord

    def __post_init__(self) -> None:
        shape = as_coord(self.shape)
        block = as_coord(self.block, len(shape))
        if any(s < 0 for s in shape) or any(b <= 0 for b in block):
            raise ValueError(f"invalid grid: shape {shape}, block {block}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "block", block)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def grid_shape(self) -> Coord:
        return tuple(ceil_div(s, b) for s, b in zip(self.shape, self.block))

    @property
    def num_blocks(self) -> int:
        n = 1
        for g in self.grid_shape:
            n *= g
        return n

    def indices(self) -> Iterator[Coord]:
        """All block indices in C order."""
        return product(*(range(g) for g in self.grid_shape))

    def box(self, index: Sequence[int]) -> Box:
        """The write box of block ``index``."""
        index = as_coord(index, self.ndim)
        if any(not 0 <= i < g for i, g in zip(index, self.grid_shape)):
            raise IndexError(f"block index {index} outside grid {self.grid_shape}")
        start = tuple(i * b for i, b in zip(index, self.block))
        return Box(start, tuple(min(s + b, n) for s, b, n in zip(start, self.block, self.shape)))

    def read_box(self, index: Sequence[int], halo: int | Sequence[int]) -> Box:
        """The write box of block ``index`` grown by ``halo`` and clipped to the volume."""
        return self.box(index).grow(halo).clip(self.shape)

    def boxes(self) -> Iterator[Box]:
        """All write boxes in C order."""
        return (self.box(i) for i in self.indices())

    def index_of(self, point: Sequence[int]) -> Coord:
        """Index of the block holding voxel ``point``."""
        point = as_coord(point, self.ndim)
        if any(not 0 <= p < s for p, s in zip(point, self.shape)):
            raise IndexError(f"voxel {point} outside volume {self.shape}")
        return tuple(p // b for p, b in zip(point, self.block))

    def indices_touching(self, box: Box) -> Iterator[Coord]:
        """Indices of all blocks whose write boxes overlap ``box``."""
        box = box.clip(self.shape)
        if box.empty:
            return iter(())
        lo = tuple(a // b for a, b in zip(box.start, self.block))
        hi = tuple(ceil_div(e, b) for e, b in zip(box.stop, self.block))
        return product(*(range(a, b) for a, b in zip(lo, hi)))

    def neighbours(self, index: Sequence[int], connectivity: int | None = None) -> Iterator[Coord]:
        """Indices of the blocks adjacent to ``index`` inside the grid.

        Parameters
        ----------
        index : tuple of int
            The block whose neighbours are wanted.
        connectivity : int, optional
            Maximum number of axes along which a neighbour may differ
            (1: faces, ndim: faces, edges and corners). In 3D, 6-, 18- and
            26-connectivity are 1, 2 and 3. Default: ``ndim``.
        """
        index = as_coord(index, self.ndim)
        rank = self.ndim if connectivity is None else connectivity
        for step in product((-1, 0, 1), repeat=self.ndim):
            moved = sum(s != 0 for s in step)
            if moved == 0 or moved > rank:
                continue
            n = tuple(i + s for i, s in zip(index, step))
            if all(0 <= a < g for a, g in zip(n, self.grid_shape)):
                yield n


def block_shape_for(
    shape: Sequence[int],
    chunks: Sequence[int],
    itemsize: int,
    target_bytes: int = 32 * 2**20,
    *,
    axes: Sequence[int] | None = None,
    cubic: bool = False,
) -> Coord:
    """A block shape made of whole chunks, doubled along ``axes`` toward ``target_bytes``.

    The one block-shape rule of the block operations. By default chunks are
    stacked along the leading axes first (``t``, ``c``, then ``z``), where
    most sources are cheapest to read; ``cubic=True`` doubles the shortest
    growing axis instead, keeping blocks near-cubic (the least halo per
    voxel). Each axis is then split into that many blocks of equal size, to
    the chunk (384 voxels make two blocks of 192, not 256 and 128), so that
    workers get even shares of the work.

    Parameters
    ----------
    shape : sequence of int
        The volume.
    chunks : sequence of int
        The starting block (whole chunks, or a whole axis).
    itemsize : int
        Bytes per voxel of what a block holds.
    target_bytes : int
        A block stops growing before it would exceed this.
    axes : sequence of int, optional
        Axes that may grow (default: all).
    cubic : bool
        Grow the shortest axis first instead of the leading ones.

    Examples
    --------
    >>> block_shape_for((100, 256, 256), (16, 64, 64), 2, target_bytes=2**19)
    (64, 64, 64)
    >>> block_shape_for((300, 300, 300), (64, 64, 64), 4, 16 * 2**20, cubic=True)
    (128, 128, 192)
    """
    shape = as_coord(shape)
    start = as_coord(chunks, len(shape))
    block = list(start)
    growing = range(len(shape)) if axes is None else axes
    while True:
        free = [i for i in growing if block[i] < shape[i]]
        if not free:
            break
        axis = min(free, key=lambda j: (block[j], -j)) if cubic else free[0]
        size = itemsize
        for b in block:
            size *= b
        if size * 2 > target_bytes:
            break
        block[axis] *= 2
    return tuple(_even_split(s, b, c) for s, b, c in zip(shape, block, start))


def _even_split(size: int, block: int, chunk: int) -> int:
    """The smallest multiple of ``chunk`` that covers ``size`` in as few blocks as ``block`` does."""
    count = ceil_div(size, block)
    return ceil_div(ceil_div(size, count), chunk) * chunk
