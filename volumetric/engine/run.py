"""Run one function per block as dask tasks that read and write Zarr themselves.

The engine never builds a dask array: each block becomes one task that
receives a :class:`~volumetric.geometry.Box` (the write box), opens its
inputs, computes and writes its output inside the worker. A job is
O(blocks) small tasks whatever the volume size, submitted as earlier ones
finish: at most :data:`SUBMIT_WINDOW` (or four per task slot) are in flight,
so the client and the scheduler hold a bounded number of tasks however many
blocks the job has.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from volumetric.engine.failures import Failures, InputFailure, attempt, outcome
from volumetric.engine.journal import Journal
from volumetric.engine.progress import Progress
from volumetric.engine.scheduler import lost_scheduler, scheduler_timeout
from volumetric.errors import BlockError, ClusterError, DamagedChunkError, VolumetricError
from volumetric.geometry import Box

if TYPE_CHECKING:
    from distributed import Client, Future

R = TypeVar("R")
W = TypeVar("W")


def _prepared(box: Box, prepare: Callable[[Box], Any]) -> Any:
    return attempt(prepare, box)


def _execute(box: Box, *prepared: Any, task: Callable[..., Any], journal: Journal | None,
             job: str) -> Any:
    if prepared and isinstance(prepared[0], InputFailure):
        return prepared[0]
    result = attempt(task, box, *prepared)
    if journal is not None and not isinstance(result, InputFailure):
        journal.mark(job, box.key())
    return result


class _Running:
    """The futures of one job, yielded as they finish, with a watch on the scheduler.

    While no task finishes for :func:`~volumetric.engine.scheduler.scheduler_timeout`
    seconds, the scheduler is asked for its identity; one that does not answer
    within that time, or a lost connection, ends the job with a
    :class:`ClusterError`. Futures still running when the job ends otherwise are
    cancelled.
    """

    def __init__(self, client: Client):
        from distributed import as_completed

        self.client = client
        self.futures = as_completed(loop=client.loop)
        self.timeout = scheduler_timeout()

    def update(self, futures: Iterable[Future]) -> None:
        """Watch ``futures`` too."""
        self.futures.update(futures)

    def __iter__(self) -> Iterator[Future]:
        futures = self.futures
        quiet_since = time.monotonic()
        while not futures.is_empty():
            if futures.has_ready():
                yield self._checked(next(futures))
                quiet_since = time.monotonic()
                continue
            with futures.thread_condition:
                futures.thread_condition.wait(timeout=0.1)
            if time.monotonic() - quiet_since >= self.timeout:
                self._ping()
                quiet_since = time.monotonic()

    def _checked(self, future: Future) -> Future:
        from distributed.client import FutureCancelledError

        if future.status == "cancelled":
            try:
                future.result()
            except FutureCancelledError as exc:
                if exc.reason == "scheduler-connection-lost":
                    raise lost_scheduler(self._address()) from None
        return future

    def result(self, future: Future) -> Any:
        """``future``'s result, fetched within the scheduler timeout (finding it asks the scheduler).

        Raises
        ------
        ClusterError
            The scheduler stopped answering, or went away, while the result was fetched.
        """
        from distributed.comm import CommClosedError

        try:
            return future.result(timeout=self.timeout)
        except (TimeoutError, asyncio.TimeoutError):
            raise self._stopped() from None
        except CommClosedError:
            raise lost_scheduler(self._address()) from None

    def _stopped(self) -> ClusterError:
        return ClusterError(f"the dask scheduler at {self._address()} stopped answering "
                            f"(nothing for {self.timeout:g} s); rerun the same command to resume")

    def _ping(self) -> None:
        try:
            self.client.sync(self.client.scheduler.identity, callback_timeout=self.timeout)
        except (TimeoutError, asyncio.TimeoutError):
            raise self._stopped() from None
        except OSError:
            raise lost_scheduler(self._address()) from None

    def _address(self) -> str:
        return str(self.client.scheduler.address)

    def __enter__(self) -> _Running:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if not isinstance(error, ClusterError):  # a gone or frozen scheduler cancels nothing
            self.client.cancel(list(self.futures.futures))


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


SUBMIT_WINDOW = 1000
"""Blocks of a job in flight at most (or four per task slot, when more): the client and the
scheduler hold that many tasks whatever the number of blocks."""


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
        ``resources``; ``task`` is then called as ``task(box, prepare(box))``.
        Blocks are submitted as others finish, at most two per task slot (a
        worker's share of ``resources``, else a thread), so each slot's next
        block is prepared, e.g. read on another thread of a GPU worker, while
        its task runs, and prepared results never pile up.

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
    todo = [b for b in blocks if b.key() not in done]
    bar = Progress(len(todo), label, skipped=len(blocks) - len(todo), enabled=progress)
    prefix = f"{label.replace(' ', '-')}-{uuid.uuid4().hex[:8]}"
    pending = ((b, f"{prefix}-{i}") for i, b in enumerate(todo))
    running = _Running(client)
    box_of: dict[str, Box] = {}
    window = SUBMIT_WINDOW

    def submit(count: int) -> None:
        batch = list(islice(pending, count))
        if not batch:
            return
        boxes, keys = [b for b, _ in batch], [k for _, k in batch]
        args: list[list[Any]] = [boxes]
        if prepare is not None:
            args.append(client.map(_prepared, boxes, prepare=prepare, retries=retries,
                                   key=[f"{k}-prepare" for k in keys], pure=False))
        running.update(client.map(_execute, *args, task=task, journal=journal, job=job, key=keys,
                                  retries=retries, pure=False, resources=resources))
        box_of.update(zip(keys, boxes))

    def refill() -> None:
        """Keep the scheduler supplied: the window full again once half of it has finished
        (a prepared job: two blocks per slot, topped up at every block)."""
        nonlocal window
        if prepare is not None:
            submit(max(0, 2 * _slots(client, resources) - len(box_of)))
        elif len(box_of) <= window // 2:
            window = max(SUBMIT_WINDOW, 4 * _slots(client, resources))
            submit(window - len(box_of))

    results: dict[Box, R] = {}
    failures = Failures(len(blocks), kept=journal is not None)
    going = True
    with running:
        refill()
        for future in running:
            box = box_of.pop(future.key)
            try:
                results[box] = outcome(future, box, running.result)
                bar.update()
            except BlockError as exc:
                going = failures.add(exc, len(results))
            future.release()
            if not going:
                break
            refill()
    if journal is not None and failures.errors:
        journal.record_damage([(c.file, c.folder) for e in failures.errors for c in e.causes
                               if isinstance(c, DamagedChunkError)])
    failures.raise_any(done=len(results) + len(blocks) - len(todo), stopped=not going)
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
