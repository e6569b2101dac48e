"""Connecting to a dask cluster: an embedded LocalCluster or an existing scheduler.

``--cluster`` accepts ``local`` (the default: a LocalCluster of worker
processes on this machine), a scheduler address (``tcp://host:8786`` or
``host:8786``) or the path of a scheduler JSON file (as written by
``dask scheduler --scheduler-file`` or dask-jobqueue). The environment
variable ``VOLUMETRIC_CLUSTER`` supplies the default,
``VOLUMETRIC_CONNECT_TIMEOUT`` the seconds to wait for a scheduler (5), and
``VOLUMETRIC_SCHEDULER_TIMEOUT`` the seconds a running job waits for a
scheduler that stopped answering before it gives up (60).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from typing import TYPE_CHECKING, Any, TextIO

from volumetric.engine.progress import silenced
from volumetric.errors import ClusterError

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

CLUSTER_ENV = "VOLUMETRIC_CLUSTER"
CONNECT_TIMEOUT_ENV = "VOLUMETRIC_CONNECT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT = 5.0
SCHEDULER_TIMEOUT_ENV = "VOLUMETRIC_SCHEDULER_TIMEOUT"
DEFAULT_SCHEDULER_TIMEOUT = 60.0
MIN_WORKER_MEMORY = 2**30
LOCALHOST = "127.0.0.1"
log = logging.getLogger("volumetric")
_shared: list[Client] = []  # the open SharedClusters' clients, the latest last


# distributed sets MALLOC_TRIM_THRESHOLD_=64 KiB in its workers, which also pins glibc's
# mmap threshold at 128 KiB: every block-sized buffer is then mmapped and unmapped again,
# doubling the CPU time of compression-bound tasks. Keep memory returned to the system,
# but serve block-sized buffers from the heap.
WORKER_ENVIRON = {
    "MALLOC_TRIM_THRESHOLD_": 64 * 2**20,
    "MALLOC_MMAP_THRESHOLD_": 32 * 2**20,
}


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


def connect_timeout() -> float:
    """Seconds to wait for a scheduler: ``$VOLUMETRIC_CONNECT_TIMEOUT``, else 5."""
    return _seconds(CONNECT_TIMEOUT_ENV, DEFAULT_CONNECT_TIMEOUT)


def scheduler_timeout() -> float:
    """Seconds a job waits for a silent scheduler: ``$VOLUMETRIC_SCHEDULER_TIMEOUT``, else 60."""
    return _seconds(SCHEDULER_TIMEOUT_ENV, DEFAULT_SCHEDULER_TIMEOUT)


def _seconds(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise ClusterError(f"${name}={value!r} is not a positive number of seconds")
    return seconds


def _read_scheduler_file(path: str) -> str:
    try:
        with open(path) as f:
            info = json.load(f)
    except FileNotFoundError:
        raise ClusterError(f"scheduler file {path}: no such file") from None
    except OSError as exc:
        raise ClusterError(f"cannot read the scheduler file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ClusterError(f"scheduler file {path} is not JSON: {exc}") from None
    address = info.get("address") if isinstance(info, dict) else None
    if not isinstance(address, str):
        raise ClusterError(f"scheduler file {path} names no scheduler address")
    return address


def _host_port(address: str) -> tuple[str, int] | None:
    """Host and port of a TCP-based address; None for the other protocols (inproc, ucx)."""
    from distributed.comm import get_address_host_port, parse_address
    from distributed.comm.registry import backends

    scheme, _ = parse_address(address, strict=False)
    if scheme in ("tcp", "tls", "ws", "wss"):
        return get_address_host_port(address)
    if scheme not in backends:
        raise ValueError(f"unknown protocol {scheme!r}")
    return None


def scheduler_address(cluster: str | None = None) -> str:
    """The scheduler address that ``cluster`` names, or ``"local"``; checked, not connected.

    Parameters
    ----------
    cluster : str, optional
        ``"local"``, a scheduler address (``tcp://host:8786``, ``host:8786``)
        or a scheduler JSON file. Default: ``$VOLUMETRIC_CLUSTER``, else ``"local"``.

    Raises
    ------
    ClusterError
        A missing or unreadable scheduler file, or an address without a port.
    """
    given = cluster or os.environ.get(CLUSTER_ENV) or "local"
    if given == "local":
        return given
    is_file = given.lower().endswith(".json") or os.path.isfile(given)
    address = _read_scheduler_file(given) if is_file else given
    try:
        _host_port(address)
    except ValueError:
        if is_file:
            problem = f"scheduler file {given} names {address!r}, not a scheduler address"
        else:
            named = f"--cluster {given}" if cluster else f"${CLUSTER_ENV}={given}"
            problem = f"{named}: not 'local', a scheduler address or an existing scheduler file"
        raise ClusterError(f"{problem} (an address needs its port: tcp://host:8786)") from None
    return address


def check_cluster(client: Client | None, cluster: str | None) -> None:
    """Check that the scheduler ``cluster`` names answers, before an operation writes anything.

    Does nothing when a ``client`` is given or the cluster is the embedded one.

    Parameters
    ----------
    client : distributed.Client, optional
        The client the operation was given, if any.
    cluster : str, optional
        What ``--cluster`` names (see :func:`scheduler_address`).

    Raises
    ------
    ClusterError
        The address is malformed, nothing listens there, or what listens does
        not answer as a dask scheduler within the connect timeout (see
        :func:`connect_timeout`).
    """
    if current_client(client, cluster) is not None:
        return
    address = scheduler_address(cluster)
    if address != "local":
        _check_scheduler(address, connect_timeout())


def _check_scheduler(address: str, seconds: float) -> None:
    """Refuse an ``address`` where no dask scheduler answers its ``identity`` within ``seconds``."""
    host_port = _host_port(address)
    if host_port is not None:  # a quick, clear answer for nothing listening there
        try:
            with socket.create_connection(host_port, timeout=seconds):
                pass
        except OSError as exc:
            raise ClusterError(
                f"cannot reach the dask scheduler at {address}: {exc.strerror or exc}"
            ) from None
    try:
        reply = _in_thread(lambda: asyncio.run(_identity(address, seconds)), 2 * seconds)
    except (TimeoutError, asyncio.TimeoutError):
        raise ClusterError(f"the server at {address} did not answer within {seconds:g} s: "
                           "is it a dask scheduler?") from None
    except Exception:  # whatever a server that speaks another protocol makes the comm raise
        reply = None
    if not (isinstance(reply, dict) and reply.get("type") == "Scheduler"):
        raise ClusterError(f"the server at {address} is not a dask scheduler")


async def _identity(address: str, seconds: float) -> Any:
    from distributed.comm import connect

    async def ask() -> Any:
        comm = await connect(address, timeout=seconds)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    return await asyncio.wait_for(ask(), seconds)


def _in_thread(call: Callable[[], Any], seconds: float) -> Any:
    """``call()`` in a thread of its own, which may run an event loop; given up after ``seconds``.

    Raises
    ------
    TimeoutError
        ``call`` has not returned after ``seconds`` (its daemon thread is left behind).
    """
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="volumetric-connect", daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:
        raise TimeoutError
    returned, value = outcome[0]
    if not returned:
        raise value
    return value


def local_cluster(
    workers: int | None = None,
    *,
    threads_per_worker: int = 1,
    memory_limit: str | int | None = "auto",
    dashboard_address: str | None = "127.0.0.1:8787",
    gpus: int = 0,
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
    """
    import dask
    from distributed import LocalCluster

    cluster_class: Any = LocalCluster
    kwargs: dict[str, Any] = {
        "n_workers": capped_workers(workers) if workers else default_workers(),
        "threads_per_worker": threads_per_worker,
        "memory_limit": memory_limit, "host": LOCALHOST,
        "dashboard_address": _on_this_machine(dashboard_address),
        "silence_logs": logging.ERROR, "processes": True,
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
    environ = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_ENVIRON.items()}
    with dask.config.set(environ), warnings.catch_warnings():
        # a busy dashboard port moves to a free one, which the printed link names
        warnings.filterwarnings("ignore", r"Port \d+ is already in use", UserWarning)
        return cluster_class(**kwargs)


def _on_this_machine(address: str | None) -> str | None:
    """``address``, on 127.0.0.1 when it names only a port (``":8787"`` would listen on all)."""
    return f"{LOCALHOST}{address}" if address and address.startswith(":") else address


def _scheduler_client(address: str, seconds: float) -> Client:
    """A client of the dask scheduler at ``address``, which must answer within ``seconds``."""
    from distributed import Client

    _check_scheduler(address, seconds)
    try:
        return _in_thread(lambda: Client(address, timeout=f"{seconds}s"), 3 * seconds)
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
) -> Iterator[Client]:
    """Yield a dask client for ``address``, starting a LocalCluster when needed.

    Worker processes (never threads) are used so that HDF5 sources are read in
    parallel despite h5py's global lock.

    Parameters
    ----------
    address : str, optional
        ``"local"``, a scheduler address or a scheduler file. Default: the
        ``VOLUMETRIC_CLUSTER`` environment variable, else ``"local"``.
    workers : int, optional
        Worker processes of the embedded cluster (default: one per core;
        ignored, with a warning, for an existing scheduler).
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

    Yields
    ------
    distributed.Client

    Raises
    ------
    ClusterError
        A malformed address, a missing scheduler file, or a scheduler that
        does not answer within :func:`connect_timeout`.
    """
    from distributed import Client

    from volumetric.engine.shutdown import QuietShutdown, quiet_logs, silence_cluster_logs

    stream = stream or sys.stderr
    address = scheduler_address(address)
    if address != "local" and workers is not None:
        log.warning("--workers %d is ignored: the workers of the cluster at %s run the tasks",
                    workers, address)
    cluster = None
    try:
        if address == "local":
            cluster = local_cluster(
                workers, threads_per_worker=threads_per_worker, memory_limit=memory_limit,
                gpus=gpus,
            )
            client = Client(cluster)
            client.register_plugin(QuietShutdown())
        else:
            client = _scheduler_client(address, connect_timeout())
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        raise ClusterError(f"cannot reach the dask scheduler at {address}: {exc}") from exc
    try:
        if not (quiet or silenced()) and client.dashboard_link:
            print(f"dask dashboard: {client.dashboard_link}", file=stream, flush=True)
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
) -> Iterator[Client]:
    """Use ``client`` (or the shared cluster), otherwise connect to ``cluster`` for the duration."""
    client = current_client(client, cluster)
    if client is not None:
        yield client
        return
    with connect(cluster, workers=workers, quiet=quiet, gpus=gpus) as new_client:
        yield new_client
