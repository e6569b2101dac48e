"""Failed blocks: what a task returns instead of raising, and how a job reports its failures.

A block whose input is bad (a :class:`~volumetric.errors.VolumetricError`:
a damaged chunk, a mask that is not binary, a full disk) fails the same way
on every attempt, so it is neither retried nor logged by the worker: the
task returns an :class:`InputFailure` and the client turns it into a
:class:`~volumetric.errors.BlockError` naming the block. A block whose worker
process dies every time it runs it (out of memory, a crash) is given up by
dask after ``distributed.scheduler.allowed-failures`` deaths (3 by default),
and named the same way.

A journaled job goes on with its other blocks after a failure, so that they
are done and marked, and a rerun, once the cause is fixed, runs only the
failed blocks (a damaged chunk fails every block whose read box, halo
included, holds it: up to 27 in 3D). It stops once :data:`FAILED_BLOCKS_LIMIT`
blocks failed and fewer blocks succeeded in the meantime: a cause shared by
every block (a full disk, a mask that is not binary) ends the job early. Any
other exception is a bug and propagates with its traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from volumetric.errors import BlockError, VolumetricError

if TYPE_CHECKING:
    from distributed import Future

FAILED_BLOCKS_LIMIT = 32


class InputFailure:
    """What a task returns instead of raising a :class:`VolumetricError`."""

    def __init__(self, error: VolumetricError):
        self.error = error


def attempt(task: Callable[..., Any], *args: Any) -> Any:
    """``task(*args)``, or an :class:`InputFailure` holding the input error it raised."""
    try:
        return task(*args)
    except VolumetricError as exc:
        return InputFailure(exc)


def died_running(error: BaseException) -> VolumetricError | None:
    """The error for a task every worker running it died on (dask's ``KilledWorker``), or None."""
    from distributed.scheduler import KilledWorker

    if not isinstance(error, KilledWorker):
        return None
    return VolumetricError(
        f"{error.allowed_failures + 1} worker processes died while running it (the last "
        f"{error.last_worker.address}): out of memory, or a crash; see the workers' logs, "
        "or try smaller blocks (--block-mb)")


def outcome(future: Future, item: object, fetch: Callable[[Future], Any]) -> Any:
    """The result of a finished task, fetched by ``fetch``.

    Raises
    ------
    BlockError
        The task failed on bad input, or killed every worker that ran it; the
        message names ``item``.
    """
    if future.status == "error":
        died = died_running(future.exception())
        if died is not None:
            raise BlockError(f"block {item}: {died}", [died])
        future.result()  # a bug: re-raised with the worker's traceback
    result = fetch(future)
    if isinstance(result, InputFailure):
        raise BlockError(f"block {item}: {result.error}", [result.error]) from result.error
    return result


class Failures:
    """The failed blocks of one job, reported together once the job ends.

    Parameters
    ----------
    total : int
        Blocks of the job, those done by an earlier run included.
    kept : bool
        Whether finished blocks are marked done (a journaled job), so that a
        rerun skips them.
    """

    def __init__(self, total: int, kept: bool):
        self.total, self.kept = total, kept
        self.errors: list[BlockError] = []

    def add(self, error: BlockError, succeeded: int) -> bool:
        """Record a failed block, ``succeeded`` blocks having succeeded so far in this run;
        True while the job may go on."""
        self.errors.append(error)
        failed = len(self.errors)
        return self.kept and (failed < FAILED_BLOCKS_LIMIT or failed <= succeeded)

    def raise_any(self, done: int, stopped: bool) -> None:
        """Raise one :class:`BlockError` for the failures, if any.

        Parameters
        ----------
        done : int
            Blocks of the job that are done (this run's and earlier ones).
        stopped : bool
            Whether the job stopped before running all its blocks.
        """
        if not self.errors:
            return
        first, more = self.errors[0], len(self.errors) - 1
        message = str(first)
        if more:
            message += f" (and {more} more block{'s' if more > 1 else ''} failed"
            message += ", so the job stopped)" if stopped else ")"
        if self.kept and done:
            message += (f"; {done} of {self.total} blocks are done: once the cause is fixed, "
                        "rerun the same command to finish")
        raise BlockError(message, [c for e in self.errors for c in e.causes]) from first
