"""A quiet shutdown of the embedded cluster.

A closing dask worker closes its connections while a heartbeat to the
scheduler may still be waiting for its answer; the worker then logs a
``CommClosedError`` traceback ("Failed to communicate with scheduler during
heartbeat"), a known race in distributed that says nothing about the run.
The cluster's own log records are therefore dropped once it is being closed:
in each worker by :class:`QuietShutdown`, here by :func:`quiet_logs`. A
client that lost its scheduler likewise logs tracebacks of its failed
reconnection; they are dropped too (:func:`silence_cluster_logs`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

# distributed.client has a level of its own: silencing "distributed" leaves it on
CLUSTER_LOGGERS = ("distributed", "distributed.client", "tornado.application")


def silence_cluster_logs() -> list[int]:
    """Drop the dask log records of this process; returns the levels to restore."""
    loggers = [logging.getLogger(name) for name in CLUSTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    return levels


class QuietShutdown(WorkerPlugin):
    """Silences the dask loggers of a worker process as soon as the worker starts closing."""

    name = "volumetric-quiet-shutdown"

    def teardown(self, worker: Any) -> None:
        silence_cluster_logs()


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Drop the dask log records of this process for the duration (the cluster's close)."""
    levels = silence_cluster_logs()
    try:
        yield
    finally:
        for name, level in zip(CLUSTER_LOGGERS, levels):
            logging.getLogger(name).setLevel(level)
