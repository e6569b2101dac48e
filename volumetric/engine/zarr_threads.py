"""One zarr thread per task thread in the worker processes this run starts.

zarr-python encodes, decodes and stores the chunks of each array access in a
thread pool, by default of ``cpu_count + 4`` threads in every process. The
embedded cluster already runs one single-threaded worker process per core,
so each worker's pool would only make those threads compete for the same
cores: converting a 1.7 GiB HDF5 on two cores took 12.35 s with the
default pools and 11.75 s with one zarr thread per worker (the same bytes).
:class:`ZarrThreads` sizes each worker's pool to its task threads before the
worker touches zarr; the workers of ``vol cluster up`` get the same setting
through :data:`ZARR_THREADS_ENV`.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

# zarr's setting as an environment variable, read when a process imports zarr
ZARR_THREADS_ENV = "ZARR_THREADING__MAX_WORKERS"


class ZarrThreads(WorkerPlugin):
    """Sets zarr's ``threading.max_workers`` of a worker process to its task threads."""

    name = "volumetric-zarr-threads"

    def setup(self, worker: Any) -> None:
        import zarr

        zarr.config.set({"threading.max_workers": int(worker.state.nthreads)})
