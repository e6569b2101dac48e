"""zarr's settings in the worker processes this run starts: the environment's, and one zarr
thread per task thread.

zarr-python encodes, decodes and stores the chunks of each array access in a
thread pool, by default of ``cpu_count + 4`` threads in every process. The
embedded cluster already runs one single-threaded worker process per core,
so each worker's pool would only make those threads compete for the same
cores: converting a 1.7 GiB HDF5 on two cores took 12.35 s with the
default pools and 11.75 s with one zarr thread per worker (the same bytes).

A worker forked from the forkserver (:mod:`volumetric.engine.forkserver`)
holds the zarr settings the server read from its environment when it
imported zarr; it reads them again from its own, so that a variable such as
``ZARR_CODEC_PIPELINE__PATH`` set after the server started still counts.

:class:`ZarrWorkerConfig` does both before the worker touches zarr; the
workers of ``vol cluster up`` get the thread setting through
:data:`ZARR_THREADS_ENV`.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

# zarr's thread setting as an environment variable, read when a process imports zarr
ZARR_THREADS_ENV = "ZARR_THREADING__MAX_WORKERS"


class ZarrWorkerConfig(WorkerPlugin):
    """Rereads zarr's settings from a worker process's environment and sets its
    ``threading.max_workers`` to the worker's task threads."""

    name = "volumetric-zarr-config"

    def setup(self, worker: Any) -> None:
        import zarr

        zarr.config.refresh()
        zarr.config.set({"threading.max_workers": int(worker.state.nthreads)})
