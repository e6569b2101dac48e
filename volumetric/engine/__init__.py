"""The block engine: the only part of volumetric that imports dask.

A block task reads its read box from Zarr, runs a kernel and writes its
write box; :func:`run_blocks` schedules such tasks on a dask cluster with
done markers (:class:`Journal`) for resume and a progress line.
"""

from volumetric.engine.cluster import (
    check_cluster,
    connect,
    current_client,
    default_workers,
    local_cluster,
    session,
    SharedCluster,
    worker_threads,
)
from volumetric.engine.journal import JOURNAL_DIR, Journal, layout_hash
from volumetric.engine.lease import acquire_lease, release_lease
from volumetric.engine.operation import Operation, Output, RunOptions, block_operation
from volumetric.engine.progress import Progress, silence, silenced
from volumetric.engine.run import ask_workers, check_resources, run_blocks, run_expanding
from volumetric.engine.targets import Target, resolve_target

__all__ = [
    "JOURNAL_DIR",
    "Client",
    "Journal",
    "Operation",
    "Output",
    "Progress",
    "RunOptions",
    "Target",
    "acquire_lease",
    "ask_workers",
    "block_operation",
    "check_cluster",
    "check_resources",
    "connect",
    "current_client",
    "default_workers",
    "layout_hash",
    "local_cluster",
    "release_lease",
    "run_blocks",
    "run_expanding",
    "resolve_target",
    "session",
    "SharedCluster",
    "silence",
    "silenced",
    "worker_threads",
]


def __getattr__(name: str) -> object:
    if name == "Client":  # distributed is imported only once a client is needed
        from distributed import Client

        return Client
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
