"""The futures of one block job, yielded as they finish, with a watch on the scheduler."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from volumetric.engine.scheduler import lost_scheduler, scheduler_timeout
from volumetric.errors import ClusterError

if TYPE_CHECKING:
    from distributed import Client, Future


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
