"""Quick blocks share tasks: batch sizes, per-block markers inside a batch, the task logs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import zarr

from volumetric.engine import Journal, run_blocks
from volumetric.engine.batches import MAX_BATCH, TASK_SECONDS, BatchSizer, InputFailure, run_batch
from volumetric.errors import InputError
from volumetric.geometry import BlockGrid, Box


@dataclass(frozen=True)
class Fill:
    """Writes 1 + the block's first coordinate; bad input at ``fail_at``."""

    array: str
    fail_at: tuple[int, ...] | None = None

    def __call__(self, box: Box) -> int:
        if box.start == self.fail_at:
            raise InputError("corrupt input")
        zarr.open_array(self.array, mode="r+")[box.slices] = 1 + box.start[0]
        return box.start[0]


def test_the_first_tasks_get_one_block_and_batches_grow_at_most_twofold():
    sizer = BatchSizer(slots=2)
    assert sizer.size(10_000) == 1
    sizer.record(1, 1e-5)
    assert sizer.size(10_000) == 2  # twice the largest batch finished so far
    sizer.record(2, 2e-5)
    assert sizer.size(10_000) == 4
    for _ in range(20):
        sizer.record(sizer.size(10**9), 1e-9)
    assert sizer.size(10**9) == MAX_BATCH
    assert sizer.size(100) == 25  # every slot keeps two tasks of what remains


def test_slow_blocks_run_one_per_task_again():
    sizer = BatchSizer(slots=2)
    sizer.record(1000, 0.1)
    assert sizer.size(10_000) == round(TASK_SECONDS / 1e-4)  # 0.1 ms per block
    sizer.record(10, 10.0)  # then 1 s per block
    sizer.record(1, 1.0)
    assert sizer.size(10_000) == 1


def test_a_batch_marks_each_block_and_runs_on_after_bad_input(tmp_path):
    array = str(tmp_path / "a.zarr")
    zarr.create_array(array, shape=(4, 4), chunks=(1, 4), dtype="int32")
    journal = Journal(tmp_path / "out.zarr", {"job": "batch"})
    journal.start()
    boxes = [Box((i, 0), (i + 1, 4)) for i in range(4)]
    results, seconds = run_batch(boxes, task=Fill(array, fail_at=(2, 0)), journal=journal,
                                 job="fill")
    assert results[:2] == [0, 1] and isinstance(results[2], InputFailure) and results[3] == 3
    assert seconds >= 0
    assert journal.done("fill") == {boxes[0].key(), boxes[1].key(), boxes[3].key()}
    np.testing.assert_array_equal(zarr.open_array(array)[:, 0], [1, 2, 0, 4])


def test_a_log_line_cut_short_is_not_a_marker(tmp_path):
    journal = Journal(tmp_path, {"job": "logs"})
    journal.start()
    with journal.marker("job") as mark:
        mark("0.0-8.8")
        mark("8.0-16.8")
    journal.mark("job", "16.0-24.8")  # a marker file of its own, as before
    (logs,) = (tmp_path / ".volumetric" / "done" / "job").glob("*.log")
    with open(logs, "a") as f:
        f.write("24.0-3")  # killed while writing
    assert journal.done("job") == {"0.0-8.8", "8.0-16.8", "16.0-24.8"}
    journal.forget("job")
    assert journal.done("job") == set()


def test_many_quick_blocks_share_tasks_and_all_resume_as_done(client, tmp_path):
    array = str(tmp_path / "a.zarr")
    grid = BlockGrid((400, 4), (1, 4))
    zarr.create_array(array, shape=grid.shape, chunks=(1, 4), dtype="int32")
    journal = Journal(tmp_path / "out.zarr", {"job": "many"})
    journal.start()
    boxes = list(grid.boxes())
    results = run_blocks(Fill(array), boxes, client=client, journal=journal, job="fill",
                         progress=False)
    assert results == {box: box.start[0] for box in boxes}
    assert journal.done("fill") == {box.key() for box in boxes}
    logs = list((tmp_path / "out.zarr" / ".volumetric" / "done" / "fill").iterdir())
    assert all(log.suffix == ".log" for log in logs) and len(logs) < len(boxes) / 4
    np.testing.assert_array_equal(zarr.open_array(array)[:, 0], np.arange(400) + 1)
    assert run_blocks(Fill(array), boxes, client=client, journal=journal, job="fill",
                      progress=False) == {}
