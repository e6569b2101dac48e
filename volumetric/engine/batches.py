"""Blocks grouped into tasks, so that quick blocks do not pay a task's overhead each.

A dask task costs the scheduler, the client and the network about a
millisecond whatever it does; a block of an empty region, or of a cheap
kernel, takes far less. :func:`run_blocks <volumetric.engine.run_blocks>`
therefore hands each task a batch of blocks, sized by :class:`BatchSizer` so
that a task takes about ``TASK_SECONDS``: one block per task while nothing is
measured or the blocks are slow, more as they prove quick. Inside a task
each block is computed, written and marked done in turn
(:func:`run_batch`), so resume keeps its granularity of one block.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from volumetric.engine.failures import InputFailure, attempt
from volumetric.engine.journal import Journal
from volumetric.geometry import Box

TASK_SECONDS = 0.1  # the time one task should take
MAX_BATCH = 4096  # blocks per task at most (one task's results travel in one message)


def run_batch(boxes: Sequence[Box], *, task: Callable[[Box], Any], journal: Journal | None,
              job: str) -> tuple[list[Any], float]:
    """Run ``task`` on each box in turn, marking each done once it returns.

    Returns the results, in the order of ``boxes``, and the seconds they took.
    A block that fails on bad input gives an :class:`InputFailure` and is not
    marked; the others run on (see :mod:`volumetric.engine.failures`).
    """
    t0 = time.perf_counter()
    results: list[Any] = []
    with journal.marker(job) if journal is not None else _NoMarker() as mark:
        for box in boxes:
            result = attempt(task, box)
            results.append(result)
            if not isinstance(result, InputFailure):
                mark(box.key())
    return results, time.perf_counter() - t0


class _NoMarker:
    def __enter__(self) -> Callable[[str], None]:
        return lambda key: None

    def __exit__(self, *exc: object) -> None:
        pass


class BatchSizer:
    """How many blocks the next task gets, from the seconds per block measured so far.

    Parameters
    ----------
    slots : int
        Tasks the cluster runs at once.

    Notes
    -----
    The first tasks get one block each. Then a batch takes ``TASK_SECONDS``
    at the latest rate measured (an exponential mean of each finished task's
    seconds per block), but at most twice the largest batch that finished,
    ``MAX_BATCH``, and a share of the remaining blocks that leaves every slot
    two tasks, so that slow blocks found after quick ones are never handed
    out in large batches, and the last tasks end together.
    """

    def __init__(self, slots: int):
        self.slots = slots
        self.per_block: float | None = None
        self.largest = 1

    def record(self, blocks: int, seconds: float) -> None:
        """A task of ``blocks`` blocks took ``seconds``."""
        rate = seconds / max(blocks, 1)
        self.per_block = rate if self.per_block is None else 0.5 * (self.per_block + rate)
        self.largest = max(self.largest, blocks)

    def size(self, remaining: int) -> int:
        """Blocks for the next task, ``remaining`` blocks being left to hand out."""
        if self.per_block is None:
            return 1
        wanted = TASK_SECONDS / max(self.per_block, 1e-9)
        share = math.ceil(remaining / (2 * self.slots))
        return max(1, min(int(wanted), 2 * self.largest, MAX_BATCH, share))
