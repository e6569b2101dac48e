"""The block engine: every block once, done markers, resume, errors naming the block."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zarr

from volumetric.engine import Journal, run_blocks, run_expanding
from volumetric.engine.failures import FAILED_BLOCKS_LIMIT
from volumetric.errors import BlockError, InputError, LayoutMismatchError
from volumetric.geometry import BlockGrid, Box


@dataclass(frozen=True)
class FillWithBlockId:
    """Writes a value derived from the block into its write box; fails on one block."""

    array: str
    fail_at: tuple[int, ...] | None = None

    def __call__(self, box: Box) -> int:
        if box.start == self.fail_at:
            raise InputError("corrupt input")
        value = 1 + sum(box.start)
        zarr.open_array(self.array, mode="r+")[box.slices] = value
        return value


def _array(tmp_path: Path, shape=(20, 30), chunks=(8, 8)) -> str:
    path = str(tmp_path / "out.zarr")
    zarr.create_array(path, shape=shape, chunks=chunks, dtype="int32", fill_value=0)
    return path


def _expected(grid: BlockGrid) -> np.ndarray:
    out = np.zeros(grid.shape, dtype=np.int32)
    for box in grid.boxes():
        out[box.slices] = 1 + sum(box.start)
    return out


def test_every_block_written_once_with_ragged_edges(client, tmp_path):
    path = _array(tmp_path)
    grid = BlockGrid((20, 30), (8, 8))
    results = run_blocks(FillWithBlockId(path), list(grid.boxes()), client=client, progress=False)
    assert len(results) == grid.num_blocks == 12
    assert results[grid.box((2, 3))] == 1 + 16 + 24
    np.testing.assert_array_equal(zarr.open_array(path)[:], _expected(grid))


def _executing(dask_worker) -> int:
    """Tasks a worker is running, cancelled ones that still run included."""
    return len(dask_worker.state.executing)


def test_failure_names_the_block_and_resume_skips_finished(client, tmp_path):
    path = _array(tmp_path)
    grid = BlockGrid((20, 30), (8, 8))
    journal = Journal(tmp_path / "out.zarr", {"shape": [20, 30], "block": [8, 8]})
    assert journal.start() is False
    bad = grid.box((1, 2))
    with pytest.raises(BlockError) as info:
        run_blocks(FillWithBlockId(path, fail_at=bad.start), list(grid.boxes()), client=client,
                   journal=journal, job="fill", progress=False, retries=0)
    assert str(info.value) == ("block [8:16, 16:24]: corrupt input; 11 of 12 blocks are done: "
                               "once the cause is fixed, rerun the same command to finish")
    done = journal.done("fill")
    assert done == {b.key() for b in grid.boxes()} - {bad.key()}  # the others ran on
    assert journal.start() is True  # same layout: resume
    results = run_blocks(FillWithBlockId(path), list(grid.boxes()), client=client,
                         journal=journal, job="fill", progress=False)
    assert list(results) == [bad]
    np.testing.assert_array_equal(zarr.open_array(path)[:], _expected(grid))


@dataclass(frozen=True)
class FailEverywhere:
    """Logs each call, then fails as bad input after a while: a cause every block shares (a
    full disk found once the block is computed)."""

    log: str

    def __call__(self, box: Box) -> None:
        time.sleep(0.05)
        with open(self.log, "a") as f:
            f.write(f"{box}\n")
        raise InputError("no space left on device")


def test_a_job_whose_every_block_fails_stops_after_a_few(client, tmp_path):
    log = tmp_path / "calls.txt"
    journal = Journal(tmp_path / "out.zarr", {"job": "full disk"})
    journal.start()
    blocks = list(BlockGrid((100, 8), (1, 8)).boxes())
    with pytest.raises(BlockError) as info:
        run_blocks(FailEverywhere(str(log)), blocks, client=client, journal=journal,
                   progress=False)
    assert str(info.value).startswith("block [")
    assert str(info.value).endswith(": no space left on device (and 31 more blocks failed, so "
                                    "the job stopped)")
    assert len(info.value.causes) == FAILED_BLOCKS_LIMIT == 32
    deadline = time.monotonic() + 30  # the tasks running when it stopped end first
    while any(client.run(_executing).values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert FAILED_BLOCKS_LIMIT <= len(log.read_text().splitlines()) < len(blocks)
    assert journal.done("blocks") == set()


def test_a_job_without_a_journal_stops_at_its_first_failure(client, tmp_path):
    path = _array(tmp_path)
    grid = BlockGrid((20, 30), (8, 8))
    with pytest.raises(BlockError) as info:
        run_blocks(FillWithBlockId(path, fail_at=(8, 16)), list(grid.boxes()), client=client,
                   progress=False)
    assert str(info.value) == "block [8:16, 16:24]: corrupt input"
    assert [str(c) for c in info.value.causes] == ["corrupt input"]


def test_a_marker_is_not_written_for_another_layout(tmp_path):
    old, new = Journal(tmp_path, {"block": [8, 8]}), Journal(tmp_path, {"block": [4, 4]})
    old.start()
    new.start(restart=True)  # an --overwrite run took the output over
    old.mark("fill", "0.0")  # a task of the earlier run, still running
    new.mark("fill", "1.1")
    assert new.done("fill") == {"1.1"}
    new.finish()  # the output is complete
    new.mark("fill", "2.2")
    assert not (tmp_path / ".volumetric" / "done").exists()


def test_changed_layout_is_refused_or_restarted(tmp_path):
    Journal(tmp_path, {"block": [8, 8]}).start()
    Journal(tmp_path, {"block": [8, 8]}).mark("fill", "0.0")
    other = Journal(tmp_path, {"block": [16, 16]})
    with pytest.raises(LayoutMismatchError):
        other.start()
    assert other.start(restart=True) is False
    assert other.done("fill") == set()


def test_sparse_block_list_leaves_other_chunks_unwritten(client, tmp_path):
    path = _array(tmp_path)
    grid = BlockGrid((20, 30), (8, 8))
    chosen = [grid.box((0, 0)), grid.box((2, 1))]
    run_blocks(FillWithBlockId(path), chosen, client=client, progress=False)
    stored = sorted(str(p.relative_to(tmp_path / "out.zarr")) for p in (tmp_path / "out.zarr").rglob("c/*/*"))
    assert stored == ["c/0/0", "c/2/1"]


@dataclass(frozen=True)
class Depth:
    """Work item task: the depth of a node of a binary tree named by its path ("", "0", "01")."""

    fail_at: str | None = None

    def __call__(self, path: str) -> int:
        if path == self.fail_at:
            raise InputError("corrupt input")
        return len(path)


def test_run_expanding_follows_each_result_until_none_are_left(client):
    followed = []

    def follow(path: str, depth: int) -> list[str]:
        followed.append(path)
        assert depth == len(path)
        return [path + "0", path + "1"] if depth < 4 else []

    tasks = run_expanding(Depth(), [""], follow, client=client, label="tree", progress=False)
    assert tasks == len(followed) == 31
    assert sorted(followed) == sorted({p[:k] for p in followed for k in range(len(p) + 1)})
    assert sum(len(p) == 4 for p in followed) == 16


def test_run_expanding_failure_names_the_item(client):
    with pytest.raises(BlockError, match="block 01: corrupt input"):
        run_expanding(Depth(fail_at="01"), ["0"], lambda p, d: [p + "0", p + "1"] if d < 3 else [],
                      client=client, label="tree", progress=False)


@dataclass(frozen=True)
class CountCalls:
    """Appends a line to a file per call, then fails as bad input."""

    log: str

    def __call__(self, box: Box) -> None:
        with open(self.log, "a") as f:
            f.write(f"{box}\n")
        raise InputError("values 0, 1, 7 seen")


def test_bad_input_is_not_retried_and_not_marked_done(client, tmp_path):
    log = tmp_path / "calls.txt"
    journal = Journal(tmp_path / "out.zarr", {"job": "fail"})
    journal.start()
    box = Box((0, 0), (8, 8))
    with pytest.raises(BlockError, match=r"block \[0:8, 0:8\]: values 0, 1, 7 seen"):
        run_blocks(CountCalls(str(log)), [box], client=client, journal=journal, retries=3,
                   progress=False)
    assert log.read_text().splitlines() == [str(box)]
    assert journal.done("blocks") == set()
    with pytest.raises(BlockError, match="values 0, 1, 7 seen"):
        run_expanding(CountCalls(str(log)), [box], lambda b, r: [], client=client, label="x",
                      retries=3, progress=False)
    assert len(log.read_text().splitlines()) == 2


def _unfinished_blocks(dask_scheduler) -> int:
    """Block tasks (not their preparations) the scheduler holds that have not finished yet."""
    return sum(not str(key).endswith("-prepare")
               and task.state in ("queued", "waiting", "no-worker", "processing")
               for key, task in dask_scheduler.tasks.items())


@dataclass(frozen=True)
class LoggedRead:
    """``prepare``: logs the block and returns its value; fails as bad input on one block."""

    log: str
    fail_at: tuple[int, ...] | None = None

    def __call__(self, box: Box) -> int:
        from distributed import get_client

        unfinished = get_client().run_on_scheduler(_unfinished_blocks)
        with open(self.log, "a") as f:
            f.write(f"read {box}\nunfinished {unfinished}\n")
        if box.start == self.fail_at:
            raise InputError("unreadable")
        return 1 + sum(box.start)


@dataclass(frozen=True)
class WriteRead:
    """The task of a prepared block: writes what was read for it, logs that it is done."""

    array: str
    log: str

    def __call__(self, box: Box, value: int) -> int:
        zarr.open_array(self.array, mode="r+")[box.slices] = value
        with open(self.log, "a") as f:
            f.write(f"done {box}\n")
        return value


def test_prepared_blocks_are_submitted_at_most_two_per_slot(client, tmp_path):
    path, log = _array(tmp_path), str(tmp_path / "log.txt")
    grid = BlockGrid((20, 30), (8, 8))
    journal = Journal(tmp_path / "out.zarr", {"job": "prepared"})
    journal.start()
    first = list(grid.boxes())[:3]
    run_blocks(WriteRead(path, log), first, client=client, journal=journal,
               prepare=LoggedRead(log), progress=False)
    results = run_blocks(WriteRead(path, log), list(grid.boxes()), client=client,
                         journal=journal, prepare=LoggedRead(log), progress=False)
    assert len(results) == grid.num_blocks - 3 and results[grid.box((2, 3))] == 1 + 16 + 24
    np.testing.assert_array_equal(zarr.open_array(path)[:], _expected(grid))
    lines = open(log).read().splitlines()
    reads = [line[5:] for line in lines if line.startswith("read")]
    assert sorted(reads) == sorted(str(b) for b in grid.boxes())  # every block read once
    slots = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
    unfinished = [int(line.split()[-1]) for line in lines if line.startswith("unfinished")]
    assert len(unfinished) == grid.num_blocks and max(unfinished) <= 2 * slots


def test_a_failed_preparation_names_the_block(client, tmp_path):
    path, log = _array(tmp_path), str(tmp_path / "log.txt")
    grid = BlockGrid((20, 30), (8, 8))
    journal = Journal(tmp_path / "out.zarr", {"job": "prepared"})
    journal.start()
    bad = grid.box((1, 2))
    with pytest.raises(BlockError, match=r"block \[8:16, 16:24\]: unreadable"):
        run_blocks(WriteRead(path, log), list(grid.boxes()), client=client, journal=journal,
                   prepare=LoggedRead(log, fail_at=bad.start), progress=False, retries=3)
    assert bad.key() not in journal.done("blocks")
    assert open(log).read().count(f"read {bad}\n") == 1 and f"done {bad}" not in open(log).read()


@dataclass(frozen=True)
class CountUnfinished:
    """Writes its block, and logs how many block tasks the scheduler holds unfinished."""

    array: str
    log: str

    def __call__(self, box: Box) -> int:
        from distributed import get_client

        unfinished = get_client().run_on_scheduler(_unfinished_blocks)
        with open(self.log, "a") as f:
            f.write(f"{unfinished}\n")
        zarr.open_array(self.array, mode="r+")[box.slices] = 1 + sum(box.start)
        return 1 + sum(box.start)


def test_a_job_keeps_a_bounded_number_of_blocks_in_flight(client, tmp_path):
    path = _array(tmp_path, shape=(20, 160), chunks=(4, 8))  # one writer per chunk
    grid = BlockGrid((20, 160), (4, 8))
    log = tmp_path / "log.txt"
    results = run_blocks(CountUnfinished(path, str(log)), list(grid.boxes()), client=client,
                         progress=False)
    assert len(results) == grid.num_blocks == 100
    np.testing.assert_array_equal(zarr.open_array(path)[:], _expected(grid))
    unfinished = [int(line) for line in log.read_text().splitlines()]
    slots = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
    assert len(unfinished) == 100 and max(unfinished) <= 4 * slots < 100
