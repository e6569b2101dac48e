"""Run one function per block as dask tasks that read and write Zarr themselves.

The engine never builds a dask array: a task receives one or more
:class:`~volumetric.geometry.Box` es (write boxes) and, for each, opens its
inputs, computes and writes its output inside the worker. Tasks are handed
out as others finish, two per task slot, each with as many blocks as take
about a tenth of a second (:mod:`volumetric.engine.batches`), so neither
the graph nor the client's futures grow with the volume, and quick blocks
do not each pay a task's overhead.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import count
from typing import TYPE_CHECKING, Any, TypeVar

from volumetric.engine.batches import BatchSizer, run_batch
from volumetric.engine.failures import Failures, InputFailure, attempt, outcome
from volumetric.engine.journal import Journal
from volumetric.engine.progress import Progress
from volumetric.engine.running import _Running
from volumetric.errors import BlockError, DamagedChunkError, VolumetricError
from volumetric.geometry import Box

if TYPE_CHECKING:
    from distributed import Client

R = TypeVar("R")
W = TypeVar("W")


def _prepared(box: Box, prepare: Callable[[Box], Any]) -> Any:
    return attempt(prepare, box)


def _execute(box: Box, prepared: Any, *, task: Callable[..., Any], journal: Journal | None,
             job: str) -> Any:
    if isinstance(prepared, InputFailure):
        return prepared
    result = attempt(task, box, prepared)
    if journal is not None and not isinstance(result, InputFailure):
        journal.mark(job, box.key())
    return result


def ask_workers(client: Client, question: Callable[[], R]) -> dict[str, tuple[R, dict[str, float]]]:
    """Run ``question()`` on every worker of the cluster.

    Parameters
    ----------
    client : distributed.Client
        The cluster to ask.
    question : callable
        A picklable function without arguments returning something small.

    Returns
    -------
    dict
        ``{worker address: (answer, resources the worker offers)}``.
    """
    answers = client.run(question)
    workers = client.scheduler_info()["workers"]
    return {address: (answer, dict(workers.get(address, {}).get("resources", {})))
            for address, answer in answers.items()}


def _slots(client: Client, resources: dict[str, float] | None) -> int:
    """Tasks the cluster runs at once: each worker's share of ``resources``, else its threads."""
    workers = client.scheduler_info()["workers"].values()
    if resources:
        return max(1, sum(int(min(w.get("resources", {}).get(k, 0) // v
                                  for k, v in resources.items())) for w in workers))
    return max(1, sum(int(w["nthreads"]) for w in workers))


def check_resources(client: Client, resources: dict[str, float] | None) -> None:
    """Refuse task resources (e.g. ``{"GPU": 1}``) that no worker offers: such tasks never start.

    Raises
    ------
    VolumetricError
        When no worker of the cluster has every resource asked for.
    """
    if not resources:
        return
    workers = client.scheduler_info()["workers"].values()
    if not any(all(w.get("resources", {}).get(k, 0) >= v for k, v in resources.items())
               for w in workers):
        names = ", ".join(f"{k}={v:g}" for k, v in resources.items())
        raise VolumetricError(
            f"no worker of the cluster offers the resources {names}; "
            f"start workers with --resources {names.replace(', ', ',')}"
        )


def run_blocks(
    task: Callable[..., R],
    blocks: Sequence[Box],
    *,
    client: Client,
    journal: Journal | None = None,
    job: str = "blocks",
    label: str | None = None,
    retries: int = 1,
    progress: bool = True,
    resources: dict[str, float] | None = None,
    prepare: Callable[[Box], Any] | None = None,
) -> dict[Box, R]:
    """Run ``task(box)`` for every block on the cluster, skipping finished ones.

    Parameters
    ----------
    task : callable
        A picklable callable taking the write box. It reads its inputs, writes
        its outputs (only inside the write box) and returns a small result.
    blocks : sequence of Box
        Write boxes; each must be written by this job alone.
    client : distributed.Client
        Where the tasks run.
    journal : Journal, optional
        Resume state; blocks already marked done under ``job`` are skipped and
        each finished block is marked after ``task`` returns.
    job : str
        Name of this job inside the journal (one output may have several).
    label : str, optional
        Text for the progress line and task names (default: ``job``).
    retries : int
        Times a failed task is retried (e.g. after a worker died).
    progress : bool
        Print a progress line on stderr.
    resources : dict, optional
        Worker resources each task holds while it runs, e.g. ``{"GPU": 1}``.
    prepare : callable, optional
        A picklable ``prepare(box)`` run as a task of its own, without
        ``resources``; ``task`` is then called as ``task(box, prepare(box))``,
        one block per task. As every task, they are submitted as others
        finish, at most two per task slot (a worker's share of ``resources``,
        else a thread), so each slot's next block is prepared, e.g. read on
        another thread of a GPU worker, while its task runs, and prepared
        results never pile up.

    Returns
    -------
    dict
        ``{box: task(box)}`` for the blocks run now (not the skipped ones).

    Raises
    ------
    BlockError
        When a task (or ``prepare``) raised a :class:`~volumetric.errors.VolumetricError`,
        or killed every worker that ran it; the message names the first such block.
        With a ``journal`` the other blocks run on and stay marked done (unless
        most blocks fail, see :mod:`volumetric.engine.failures`), and the
        damaged chunk files named are recorded in it, so that a rerun after their
        repair resumes (see :meth:`Journal.record_damage`). Other exceptions
        propagate unchanged.
    ClusterError
        When the scheduler was lost, or stopped answering for
        ``$VOLUMETRIC_SCHEDULER_TIMEOUT`` seconds.
    """
    check_resources(client, resources)
    label = label or job
    done = journal.done(job) if journal is not None else set()
    todo = deque(b for b in blocks if b.key() not in done)
    skipped = len(blocks) - len(todo)
    bar = Progress(len(todo), label, skipped=skipped, enabled=progress)
    prefix = f"{label.replace(' ', '-')}-{uuid.uuid4().hex[:8]}"
    numbers = count()
    running = _Running(client)
    boxes_of: dict[str, list[Box]] = {}
    alone: deque[Box] = deque()  # blocks of a task that died: run again one per task
    sizer = BatchSizer(_slots(client, resources))
    checked = time.monotonic()

    def submit() -> None:
        nonlocal checked
        if time.monotonic() - checked > 1.0:  # workers join and leave
            sizer.slots, checked = _slots(client, resources), time.monotonic()
        while (todo or alone) and len(boxes_of) < 2 * sizer.slots:
            key = f"{prefix}-{next(numbers)}"
            if prepare is None:
                boxes = ([alone.popleft()] if alone else
                         [todo.popleft() for _ in range(sizer.size(len(todo)))])
                future = client.submit(run_batch, boxes, task=task, journal=journal, job=job,
                                       key=key, retries=retries, pure=False,
                                       resources=resources)
            else:
                boxes = [todo.popleft()]
                read = client.submit(_prepared, boxes[0], prepare=prepare, retries=retries,
                                     key=f"{key}-prepare", pure=False)
                future = client.submit(_execute, boxes[0], read, task=task, journal=journal,
                                       job=job, key=key, retries=retries, pure=False,
                                       resources=resources)
            boxes_of[key] = boxes
            running.update([future])

    results: dict[Box, R] = {}
    failures = Failures(len(blocks), kept=journal is not None)
    going = True
    with running:
        submit()
        for future in running:
            boxes = boxes_of.pop(future.key)
            try:
                if prepare is None:
                    values, seconds = outcome(future, boxes[0], running.result)
                    sizer.record(len(values), seconds)
                else:
                    values = [outcome(future, boxes[0], running.result)]
            except BlockError as exc:  # the task killed its workers
                if len(boxes) > 1:  # which block did is found by running them alone
                    alone.extend(boxes)
                    future.release()
                    submit()
                    continue
                values = [InputFailure(exc)]
            future.release()
            for box, value in zip(boxes, values):
                if isinstance(value, InputFailure):
                    error = value.error if isinstance(value.error, BlockError) else BlockError(
                        f"block {box}: {value.error}", [value.error])
                    going = failures.add(error, len(results)) and going
                else:
                    results[box] = value
                    bar.update()
            if not going:
                break
            submit()
    if journal is not None and failures.errors:
        journal.record_damage([(c.file, c.folder) for e in failures.errors for c in e.causes
                               if isinstance(c, DamagedChunkError)])
    failures.raise_any(done=len(results) + skipped, stopped=not going)
    bar.close()
    return results


def run_expanding(
    task: Callable[[W], R],
    first: Iterable[W],
    follow: Callable[[W, R], Iterable[W]],
    *,
    client: Client,
    label: str,
    retries: int = 1,
    progress: bool = True,
) -> int:
    """Run ``task(item)`` for ``first`` and for the items each result leads to, until none are left.

    There are no rounds: as soon as a task finishes, ``follow(item, result)``
    (called here, in order of completion) names the next items and they are
    submitted at once, so the workers stay busy while any work is known.

    Parameters
    ----------
    task : callable
        A picklable callable taking one work item and returning a small result.
    first : iterable
        The first work items (picklable; ``str(item)`` names one in errors).
    follow : callable
        ``follow(item, result)`` returns the work items that follow.
    client : distributed.Client
        Where the tasks run.
    label : str
        Text for the progress line and task names.
    retries : int
        Times a failed task is retried (e.g. after a worker died).
    progress : bool
        Print a progress line on stderr.

    Returns
    -------
    int
        The number of tasks run.

    Raises
    ------
    BlockError
        When a task raised a :class:`~volumetric.errors.VolumetricError`; the
        message names the work item. Other exceptions propagate unchanged.
    ClusterError
        When the scheduler was lost, or stopped answering for
        ``$VOLUMETRIC_SCHEDULER_TIMEOUT`` seconds.
    """
    bar = Progress(0, label, enabled=progress)
    prefix = f"{label.replace(' ', '-')}-{uuid.uuid4().hex[:8]}"
    running = _Running(client)
    item_of: dict[str, W] = {}

    def submit(items: Iterable[W]) -> None:
        for item in items:
            future = client.submit(attempt, task, item, key=f"{prefix}-{bar.total}",
                                   retries=retries, pure=False)
            item_of[future.key] = item
            running.update([future])
            bar.total += 1

    with running:
        submit(first)
        for future in running:
            item = item_of.pop(future.key)
            result = outcome(future, item, running.result)
            future.release()
            bar.update()
            submit(follow(item, result))
    bar.close()
    return bar.total
