"""Connecting to a dask cluster: an embedded LocalCluster, an existing scheduler, a profile's
cluster, or a shared one.

What ``--cluster`` may name is :mod:`volumetric.engine.targets`, how a
scheduler is checked :mod:`volumetric.engine.scheduler`; here the clients are
made: :func:`connect` for one operation, :class:`SharedCluster` for every
operation of a script.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from typing import TYPE_CHECKING, Any, TextIO

from volumetric.engine.forkserver import environ_changes, start_forkserver
from volumetric.engine.progress import silenced
from volumetric.engine.scheduler import (
    check_scheduler,
    connect_timeout,
    in_thread,
    lost_scheduler,
)
from volumetric.engine.targets import Target, resolve_target
from volumetric.errors import ClusterError

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

MIN_WORKER_MEMORY = 2**30
LOCALHOST = "127.0.0.1"
log = logging.getLogger("volumetric")
_shared: list[Client] = []  # the open SharedClusters' clients, the latest last


# distributed sets MALLOC_TRIM_THRESHOLD_=64 KiB in its workers, which also pins glibc's
# mmap threshold at 128 KiB: every block-sized buffer is then mmapped and unmapped again,
# doubling the CPU time of compression-bound tasks. Keep memory returned to the system,
# but serve block-sized buffers from the heap. One BLAS thread per task slot, as distributed
# sets: as DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON (standing clusters, job scripts) this
# dict replaces distributed's own.
WORKER_ENVIRON = {
    "MALLOC_TRIM_THRESHOLD_": 64 * 2**20,
    "MALLOC_MMAP_THRESHOLD_": 32 * 2**20,
    "OMP_NUM_THREADS": 1,
    "MKL_NUM_THREADS": 1,
    "OPENBLAS_NUM_THREADS": 1,
}
# the one Python hash seed of all workers, which distributed gives spawned ones
_FORKSERVER_ENVIRON = {**WORKER_ENVIRON, "PYTHONHASHSEED": 6640}


def default_workers() -> int:
    """Worker processes for the embedded cluster: one per CPU core, at most 8."""
    return max(1, min(os.cpu_count() or 1, 8))


def workers_cap(cores: int, memory: int) -> int:
    """The most worker processes a machine holds: at most one per core and per GiB, at least one.

    Parameters
    ----------
    cores : int
        CPU cores the processes may run on.
    memory : int
        Bytes of memory available.
    """
    return max(1, min(cores, memory // MIN_WORKER_MEMORY))


def capped_workers(workers: int) -> int:
    """``workers``, or what this machine holds (:func:`workers_cap`) with a warning when fewer.

    The cores are those this process may run on, the memory what is available now.
    """
    import psutil

    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity else os.cpu_count() or 1
    memory = psutil.virtual_memory().available
    cap = workers_cap(cores, memory)
    if workers <= cap:
        return workers
    log.warning("--workers %d is more than this machine holds (%d cores, %.0f GiB available); "
                "using %d", workers, cores, memory / 2**30, cap)
    return cap


def worker_threads() -> int:
    """Threads of the dask worker running the caller (CPU cores outside a worker)."""
    from distributed import get_worker

    try:
        return int(get_worker().state.nthreads)
    except ValueError:
        return os.cpu_count() or 1


def check_cluster(client: Client | None, cluster: str | None) -> None:
    """Check that the scheduler ``cluster`` names answers, before an operation writes anything.

    Does nothing when a ``client`` is given or the cluster is the embedded one.

    Parameters
    ----------
    client : distributed.Client, optional
        The client the operation was given, if any.
    cluster : str, optional
        What ``--cluster`` names (see :func:`~volumetric.engine.targets.resolve_target`).

    Raises
    ------
    ClusterError
        The address is malformed, nothing listens there, what listens does
        not answer as a dask scheduler within the connect timeout (see
        :func:`connect_timeout`), or its workers run other versions of the
        packages than this process; a profile that is unknown or cannot be
        used here.
    """
    if current_client(client, cluster) is not None:
        return
    target = resolve_target(cluster)
    if target.address is not None:
        _check_scheduler(target.address, connect_timeout())


def prepare_embedded_workers(client: Client | None, cluster: str | None, *, gpus: int = 0,
                             in_process: bool = False) -> None:
    """Start the server that the embedded cluster forks its worker processes from, when this
    run starts such a cluster (see :mod:`volumetric.engine.forkserver`).

    An operation calls it before it prepares its output, so that the server
    imports what the tasks need meanwhile; the arguments are those of
    :func:`session`. It does nothing where workers are threads (``in_process``),
    drive GPUs, or run elsewhere.
    """
    if gpus or in_process or current_client(client, cluster) is not None:
        return
    if resolve_target(cluster).embedded:
        start_forkserver(_FORKSERVER_ENVIRON)


def local_cluster(
    workers: int | None = None,
    *,
    threads_per_worker: int = 1,
    memory_limit: str | int | None = "auto",
    dashboard_address: str | None = "127.0.0.1:8787",
    gpus: int = 0,
    processes: bool = True,
) -> LocalCluster:
    """A LocalCluster of worker processes tuned for block tasks.

    Parameters
    ----------
    workers : int, optional
        Worker processes (default: one per core); at most what the machine
        holds (see :func:`capped_workers`).
    threads_per_worker : int
        Threads per worker process.
    memory_limit : str or int, optional
        Per-worker memory limit.
    dashboard_address : str, optional
        Where the dashboard listens (``":0"`` for any free port); an address
        without a host, like the scheduler, on this machine only (127.0.0.1).
    gpus : int
        GPUs to drive: one worker per GPU, with the resource ``GPU: 1`` and its
        share of the cores (``workers`` and ``threads_per_worker`` are then
        ignored). dask-cuda's LocalCUDACluster pins each worker to its own GPU
        when it is installed; otherwise a single worker drives ``cuda``.
    processes : bool
        Worker processes (the default); false runs the workers as threads of
        this process, which start at once (for small jobs, see :func:`connect`).
    """
    import dask
    from distributed import LocalCluster

    cluster_class: Any = LocalCluster
    kwargs: dict[str, Any] = {
        "n_workers": capped_workers(workers) if workers else default_workers(),
        "threads_per_worker": threads_per_worker,
        "memory_limit": memory_limit, "host": LOCALHOST,
        "dashboard_address": on_this_machine(dashboard_address),
        "silence_logs": logging.ERROR, "processes": processes or gpus > 0,
    }
    if gpus > 0:
        kwargs.update(n_workers=gpus, threads_per_worker=max(1, (os.cpu_count() or 1) // gpus),
                      resources={"GPU": 1})
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            if gpus > 1:
                log.warning("dask-cuda is not installed: using one of %d GPUs", gpus)
            kwargs["n_workers"] = 1
        else:
            cluster_class = LocalCUDACluster
            del kwargs["processes"]  # always worker processes
    if not kwargs["processes"]:
        kwargs["protocol"] = "tcp"  # on 127.0.0.1, as the dashboard link says, not inproc
    environ = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_ENVIRON.items()}
    if kwargs["processes"] and gpus == 0 and start_forkserver(_FORKSERVER_ENVIRON):
        environ["distributed.worker.multiprocessing-method"] = "forkserver"
        kwargs["env"] = environ_changes()
    with dask.config.set(environ), warnings.catch_warnings():
        # a busy dashboard port moves to a free one, which the printed link names
        warnings.filterwarnings("ignore", r"Port \d+ is already in use", UserWarning)
        return cluster_class(**kwargs)


def on_this_machine(address: str | None) -> str | None:
    """``address``, on 127.0.0.1 when it names only a port (``":8787"`` would listen on all)."""
    return f"{LOCALHOST}{address}" if address and address.startswith(":") else address


def _check_scheduler(address: str, seconds: float, versions: bool = True) -> None:
    """A dask scheduler answers at ``address``, and its workers run this process's packages."""
    from volumetric.engine.census import check_versions

    check_scheduler(address, seconds)
    if versions:
        check_versions(address, seconds)


def _scheduler_client(address: str, seconds: float, versions: bool = True) -> Client:
    """A client of the dask scheduler at ``address``, which must answer within ``seconds``
    (and whose workers run this process's packages, unless ``versions`` is false)."""
    from distributed import Client

    _check_scheduler(address, seconds, versions)
    try:
        return in_thread(lambda: Client(address, timeout=f"{seconds}s"), 3 * seconds)
    except TimeoutError:  # 3 steps of the client's start, each bounded by its timeout
        raise ClusterError(f"the dask scheduler at {address} did not answer within "
                           f"{3 * seconds:g} s") from None


@contextmanager
def connect(
    address: str | None = None,
    *,
    workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str | int | None = "auto",
    stream: TextIO | None = None,
    quiet: bool = False,
    gpus: int = 0,
    checked: bool = False,
    in_process: bool = False,
) -> Iterator[Client]:
    """Yield a dask client for ``address``, starting a LocalCluster when needed.

    The embedded cluster runs worker processes, so that HDF5 sources are read
    in parallel despite h5py's global lock and each worker has its own memory
    settings; for a small job (``in_process``) starting them would take longer
    than the job, and its workers run as threads of this process instead.

    Parameters
    ----------
    address : str, optional
        ``"local"``, ``"local:N"``, a scheduler address, a scheduler file or a
        profile name (see :func:`~volumetric.engine.targets.resolve_target`).
        Default: the ``VOLUMETRIC_CLUSTER`` environment variable, else ``"local"``.
    workers : int, optional
        Worker processes of the embedded cluster (default: one per core, or N
        of ``local:N``; ignored, with a warning, for any other cluster).
    threads_per_worker : int
        Threads per worker process of the embedded cluster.
    memory_limit : str or int, optional
        Per-worker memory limit of the embedded cluster.
    stream : file, optional
        Where the dashboard link goes (default: stderr).
    quiet : bool
        Do not print the dashboard link.
    gpus : int
        GPUs for the embedded cluster (see :func:`local_cluster`).
    checked : bool
        :func:`check_cluster` has just compared the package versions of the
        scheduler's workers: they are not asked again.
    in_process : bool
        The job is small and its inputs may be read from threads (see
        :attr:`volumetric.io.sources.Source.thread_safe`): an embedded cluster
        without GPUs runs its workers as threads of this process. Other
        clusters are unaffected.

    Yields
    ------
    distributed.Client

    Raises
    ------
    ClusterError
        A malformed address, a missing scheduler file, a scheduler that does
        not answer within :func:`connect_timeout`, workers with other package
        versions, or a profile that cannot be used.
    """
    from distributed import Client

    from volumetric.engine.shutdown import QuietShutdown, quiet_logs, silence_cluster_logs
    from volumetric.engine.zarr_config import ZarrWorkerConfig

    stream = stream or sys.stderr
    target = resolve_target(address)
    ignored = target.workers is not None and workers is not None and workers != target.workers
    if workers is not None and (not target.embedded or ignored):
        log.warning("--workers %d is ignored: the workers of %s run the tasks", workers,
                    target.named)
    cluster = None
    try:
        threads = in_process and target.embedded and gpus == 0
        if target.embedded:
            cluster = local_cluster(
                target.workers or workers, threads_per_worker=threads_per_worker,
                memory_limit=memory_limit, gpus=gpus, processes=not threads,
            )
        elif target.profile is not None:
            cluster = target.profile.start()
        if cluster is not None:
            client = Client(cluster)
            # (workers in this process log through its loggers: quiet_logs covers their close)
            if not threads and (target.profile is None
                                or target.profile.kind in ("local", "cuda")):
                client.register_plugin(QuietShutdown())
                client.register_plugin(ZarrWorkerConfig())
        else:
            assert target.address is not None
            client = _scheduler_client(target.address, connect_timeout(), not checked)
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        raise ClusterError(f"cannot reach the dask scheduler of {target.named}: {exc}") from exc
    try:
        if not (quiet or silenced()):
            _announce(client, target, stream)
        with lost_is_one_line(client):
            yield client
    except ClusterError:
        # a client that lost its scheduler logs its failed reconnection, even after its close
        silence_cluster_logs()
        raise
    finally:
        with quiet_logs(), suppress(OSError, TimeoutError):  # a frozen scheduler: close times out
            client.close()
        if cluster is not None:
            with quiet_logs():
                cluster.close()


@contextmanager
def lost_is_one_line(client: Client) -> Iterator[None]:
    """Turn a connection to ``client``'s scheduler closed under a call into a :class:`ClusterError`.

    Whatever asks the scheduler while it goes away (a result fetched, workers
    listed) then ends the run with one line, as a lost scheduler does between
    calls (see :mod:`volumetric.engine.run`).
    """
    from distributed.comm import CommClosedError

    try:
        yield
    except CommClosedError:
        raise lost_scheduler(str(client.scheduler.address)) from None


def _announce(client: Client, target: Target, stream: TextIO) -> None:
    """Print the dashboard link, and the jobs a job-queue profile submitted."""
    if client.dashboard_link:
        print(f"dask dashboard: {client.dashboard_link}", file=stream, flush=True)
    profile = target.profile
    if profile is not None and profile.kind not in ("local", "cuda"):
        print(f"submitted {profile.jobs} {profile.kind.upper()} job(s) of profile "
              f"{profile.name}; tasks start as their workers join", file=stream, flush=True)


class SharedCluster:
    """One cluster for every operation a script or notebook runs, started once.

    While it is open, operations called without ``client=`` or ``cluster=``
    (in :class:`~volumetric.engine.RunOptions`) run on it instead of starting
    their own, so the cluster's start-up is paid once. Use it in a ``with``
    block, or open it in one notebook cell and :meth:`close` it in another.

    Parameters
    ----------
    address : str, optional
        As for :func:`connect` (default: the embedded LocalCluster).
    workers, gpus, quiet
        As for :func:`connect`.

    Examples
    --------
    >>> import volumetric                                       # doctest: +SKIP
    >>> with volumetric.cluster(workers=2):                     # doctest: +SKIP
    ...     volumetric.convert("brain.h5", "brain.zarr")
    ...     volumetric.distance("mask.zarr", "dist.zarr", clip=10)
    """

    def __init__(self, address: str | None = None, *, workers: int | None = None,
                 gpus: int = 0, quiet: bool = False):
        self._stack = ExitStack()
        self.client: Client = self._stack.enter_context(
            connect(address, workers=workers, gpus=gpus, quiet=quiet))
        _shared.append(self.client)

    def close(self) -> None:
        """Stop the cluster (or leave the external one); later operations start their own."""
        if self.client in _shared:
            _shared.remove(self.client)
            self._stack.close()

    def __enter__(self) -> Client:
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.close()


def current_client(client: Client | None, cluster: str | None) -> Client | None:
    """``client``, else the open :class:`SharedCluster` when no ``cluster`` is named."""
    if client is None and cluster is None and _shared:
        return _shared[-1]
    return client


@contextmanager
def session(
    client: Client | None = None,
    cluster: str | None = None,
    workers: int | None = None,
    quiet: bool = False,
    gpus: int = 0,
    checked: bool = False,
    in_process: bool = False,
) -> Iterator[Client]:
    """Use ``client`` (or the shared cluster), otherwise connect to ``cluster`` for the duration
    (``checked``: by :func:`check_cluster`, just before; ``in_process``: a small job; see
    :func:`connect`)."""
    client = current_client(client, cluster)
    if client is not None:
        with lost_is_one_line(client):
            yield client
        return
    with connect(cluster, workers=workers, quiet=quiet, gpus=gpus, checked=checked,
                 in_process=in_process) as new_client:
        yield new_client
