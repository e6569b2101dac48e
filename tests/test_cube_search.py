"""The region search of discovery against a brute-force reference on random occupancy fields."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import ndimage as ndi

from volumetric.geometry import BlockGrid, Coord
from volumetric.ops.cube_search import ExpandRegion, level_search, region_search

MIN_VOXELS = 5


@dataclass(frozen=True)
class FieldReader:
    """Counts from an array (one value per cube); every cube asked for is logged to a file."""

    counts: np.ndarray
    log: str

    @property
    def grid(self) -> BlockGrid:
        return BlockGrid(self.counts.shape, (1,) * self.counts.ndim)

    def count(self, cubes) -> dict[Coord, int]:
        cubes = list(cubes)
        with open(self.log, "a") as f:
            f.write("".join(f"{','.join(map(str, c))}\n" for c in cubes))
        return {c: int(self.counts[c]) for c in cubes}


@dataclass
class MemoryStore:
    """A count store that stays in memory and counts its saves."""

    counts: dict
    saves: int = 0

    def save(self) -> None:
        self.saves += 1


def _reference(counts: np.ndarray, seeds: list[Coord], rank: int) -> tuple[set, set]:
    """Kept cubes (labelled components holding a seed) and cubes a search must read."""
    structure = ndi.generate_binary_structure(counts.ndim, rank)
    occupied = counts >= MIN_VOXELS
    labels, _ = ndi.label(occupied, structure)
    kept = np.isin(labels, [labels[s] for s in seeds if labels[s]])
    must_read = ndi.binary_dilation(kept, structure)
    must_read[tuple(np.array(seeds).T)] = True
    as_set = lambda mask: {tuple(int(i) for i in c) for c in np.argwhere(mask)}  # noqa: E731
    return as_set(kept), as_set(must_read)


def _read_log(path) -> Counter:
    return Counter(tuple(int(v) for v in line.split(",")) for line in path.read_text().split())


@pytest.mark.parametrize("case", range(8))
def test_region_search_equals_brute_force(client, tmp_path, case):
    rng = np.random.default_rng(case)
    shape = tuple(int(s) for s in rng.integers(3, 12, size=3))
    occupied = rng.random(shape) < rng.uniform(0.1, 0.4)
    counts = np.where(occupied, rng.integers(MIN_VOXELS, 10, size=shape),
                      rng.integers(0, MIN_VOXELS, size=shape))
    rank = int(rng.integers(1, 4))
    region = tuple(int(r) for r in rng.integers(1, 6, size=3))
    # Two seeds in occupied cubes, one anywhere.
    picks = rng.choice(np.argwhere(occupied), size=2)
    seeds = sorted({tuple(int(v) for v in c) for c in [*picks, rng.integers(0, shape)]})
    log = tmp_path / "reads.txt"
    log.touch()
    reader = FieldReader(counts, str(log))
    store = MemoryStore({})
    tasks = region_search(seeds, ExpandRegion(reader, rank, MIN_VOXELS), store,
                          region_shape=region, client=client, progress=False)

    kept, read, _ = level_search(seeds, reader.grid, rank, MIN_VOXELS,
                                 lambda cubes: {c: store.counts[c] for c in cubes})
    expected_kept, must_read = _reference(counts, seeds, rank)
    reads = _read_log(log)
    assert set(kept) == expected_kept
    assert max(reads.values()) == 1  # no cube read twice
    assert set(reads) == set(store.counts) == read == must_read
    assert tasks >= len({tuple(s // r for s, r in zip(c, region)) for c in seeds})
    assert store.saves >= 1


def test_region_search_reads_no_known_count(client, tmp_path):
    counts = np.zeros((6, 6, 6), dtype=int)
    counts[1:5, 2, 2] = 9  # a rod through two regions of 3 x 3 x 3 cubes
    log = tmp_path / "reads.txt"
    log.touch()
    reader = FieldReader(counts, str(log))
    known = {(1, 2, 2): 9, (2, 2, 2): 9, (0, 0, 0): 0}
    store = MemoryStore(dict(known))
    region_search([(1, 2, 2)], ExpandRegion(reader, 1, MIN_VOXELS), store, region_shape=(3, 3, 3),
                  client=client, progress=False)
    reads = _read_log(log)
    assert not set(reads) & set(known) and max(reads.values()) == 1
    kept, read, levels = level_search([(1, 2, 2)], reader.grid, 1, MIN_VOXELS,
                                      lambda cubes: {c: store.counts[c] for c in cubes})
    assert kept == [(1, 2, 2), (2, 2, 2), (3, 2, 2), (4, 2, 2)] and levels == 5
    assert read == set(reads) | {(1, 2, 2), (2, 2, 2)}
