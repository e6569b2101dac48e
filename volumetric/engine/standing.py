"""A standing cluster on this machine: ``vol cluster up`` and ``vol cluster down``.

``up`` starts a dask scheduler and its workers as detached processes
(``python -m dask scheduler`` and ``python -m dask worker --nworkers N``, in
sessions of their own, so they outlive the command and its terminal), all on
127.0.0.1, waits until every worker has joined, and writes a state file.
Commands pointed at its address (``--cluster`` or ``$VOLUMETRIC_CLUSTER``) then
skip the start-up of an embedded cluster. ``down`` stops the processes the
state file names (after checking that they are still the ones started) and
removes it.

The state folder is ``$VOLUMETRIC_STATE``, else ``~/.cache/volumetric``
(``$XDG_CACHE_HOME`` honoured); it holds ``cluster.json``, the scheduler file
and the processes' logs.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from volumetric.engine.cluster import (
    LOCALHOST,
    WORKER_ENVIRON,
    capped_workers,
    default_workers,
    on_this_machine,
)
from volumetric.engine.gpu_pin import GPU_SLOTS_ENV, JOB_WORKERS_ENV
from volumetric.engine.scheduler import CLUSTER_ENV, connect_timeout
from volumetric.engine.zarr_config import ZARR_THREADS_ENV
from volumetric.errors import ClusterError

STATE_ENV = "VOLUMETRIC_STATE"
STATE_FILE = "cluster.json"
SCHEDULER_FILE = "scheduler.json"
START_TIMEOUT = 120.0


def state_dir() -> Path:
    """The folder of the standing cluster's state: ``$VOLUMETRIC_STATE``, else the user's cache."""
    given = os.environ.get(STATE_ENV)
    if given:
        return Path(given).expanduser().absolute()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "volumetric"


def read_state() -> dict[str, Any] | None:
    """What ``vol cluster up`` recorded (address, dashboard, processes...), or None."""
    try:
        state = json.loads((state_dir() / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ClusterError(f"cannot read {state_dir() / STATE_FILE}: {exc}") from None
    return state if isinstance(state, dict) else None


def described_address(given: str | None = None) -> str:
    """The scheduler ``vol cluster info`` describes: ``given``, else the standing cluster's,
    else ``$VOLUMETRIC_CLUSTER``'s.

    Raises
    ------
    ClusterError
        ``given`` (or the environment) names no running scheduler (``local``,
        a profile), or nothing names one.
    """
    from volumetric.engine.targets import resolve_target

    state = None if given else read_state()
    if state is not None:
        return str(state["address"])
    if not given and not os.environ.get(CLUSTER_ENV):
        raise ClusterError("no cluster to describe: give its ADDRESS or scheduler file, or start "
                           "one with `vol cluster up`")
    target = resolve_target(given)
    if target.address is None:
        raise ClusterError(f"{given or target.named} names no running scheduler: `vol cluster "
                           "info` describes one at an address or in a scheduler file")
    return target.address


def cluster_up(
    workers: int | None = None,
    *,
    threads: int | None = None,
    memory_limit: str = "auto",
    gpus: int = 0,
    dashboard_address: str = f"{LOCALHOST}:8787",
    timeout: float = START_TIMEOUT,
) -> dict[str, Any]:
    """Start a scheduler and its workers as detached processes; return the recorded state.

    Parameters
    ----------
    workers : int, optional
        Worker processes (default: one per core, at most what the machine holds).
    threads : int, optional
        Threads per worker process (default 1; with ``gpus``, the cores shared out).
    memory_limit : str
        Memory limit of each worker (``"auto"``: the machine's memory shared out).
    gpus : int
        GPUs to drive: one worker process per GPU, pinned to it and offering
        the resource ``GPU: 1`` (``workers`` is then ignored).
    dashboard_address : str
        Where the scheduler's dashboard listens (a port alone: on 127.0.0.1).
    timeout : float
        Seconds to wait for the scheduler and every worker.

    Returns
    -------
    dict
        The state: ``address``, ``dashboard``, ``workers``, ``threads``, ``gpus``,
        ``processes`` and ``folder``.

    Raises
    ------
    ClusterError
        A cluster started by ``vol cluster up`` still runs, or the processes
        did not come up within ``timeout`` (the message names their log).
    """
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        _refuse_running()
        count = gpus if gpus > 0 else (capped_workers(workers) if workers else default_workers())
        if threads is None:
            threads = max(1, (os.cpu_count() or 1) // gpus) if gpus > 0 else 1
        scheduler_file = folder / SCHEDULER_FILE
        scheduler_file.unlink(missing_ok=True)
        started: list[dict[str, Any]] = []
        try:
            started.append(_detached("scheduler", folder, [
                "scheduler", "--host", LOCALHOST, "--port", "0", "--scheduler-file",
                str(scheduler_file), "--dashboard-address",
                on_this_machine(dashboard_address) or f"{LOCALHOST}:8787"]))
            address = _wait_for_address(scheduler_file, started[0], timeout)
            environ = {"DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON": repr(WORKER_ENVIRON),
                       ZARR_THREADS_ENV: str(threads)}
            extra = []
            if gpus > 0:
                extra = ["--resources", "GPU=1", "--preload", "volumetric.engine.gpu_pin"]
                environ.update({JOB_WORKERS_ENV: str(gpus), GPU_SLOTS_ENV: "1"})
            started.append(_detached("workers", folder, [
                "worker", address, "--nworkers", str(count), "--nthreads", str(threads),
                "--memory-limit", str(memory_limit), "--host", LOCALHOST, "--name", "volumetric",
                "--no-dashboard", *extra], environ))
            dashboard = _wait_for_workers(address, count, started, timeout)
        except BaseException:
            _stop(started)
            raise
        state = {"address": address, "dashboard": dashboard, "workers": count,
                 "threads": threads, "gpus": gpus, "memory_limit": str(memory_limit),
                 "processes": started, "folder": str(folder), "started": time.time()}
        _write_state(folder, state)
        return state


def cluster_down() -> dict[str, Any]:
    """Stop the scheduler and workers that ``vol cluster up`` started; return their state.

    Raises
    ------
    ClusterError
        No cluster was started (no state file).
    """
    folder = state_dir()
    with _locked(folder):
        state = read_state()
        if state is None:
            raise ClusterError(f"no cluster started by `vol cluster up` to stop "
                               f"({folder / STATE_FILE} does not exist)")
        _stop(list(state.get("processes", [])))
        (folder / STATE_FILE).unlink(missing_ok=True)
        (folder / SCHEDULER_FILE).unlink(missing_ok=True)
        return state


def _refuse_running() -> None:
    """Refuse to start a second standing cluster; forget one whose processes are gone."""
    state = read_state()
    if state is None:
        return
    if any(_alive(p) for p in state.get("processes", [])):
        raise ClusterError(f"a cluster started by `vol cluster up` runs at {state.get('address')} "
                           f"({state_dir() / STATE_FILE}); stop it with `vol cluster down`")
    (state_dir() / STATE_FILE).unlink(missing_ok=True)


def _detached(role: str, folder: Path, args: list[str],
              environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Start ``python -m dask ARGS`` in a session of its own, logging to ``folder/ROLE.log``."""
    import psutil

    log = folder / f"{role}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dask", *args], stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True, cwd=folder,
            env={**os.environ, **(environ or {})})
    return {"role": role, "pid": process.pid, "created": psutil.Process(process.pid).create_time(),
            "log": str(log)}


def _wait_for_address(scheduler_file: Path, scheduler: dict[str, Any], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(OSError, ValueError, KeyError, TypeError):
            return str(json.loads(scheduler_file.read_text())["address"])
        _check_started(scheduler)
        time.sleep(0.1)
    raise ClusterError(f"the dask scheduler did not start within {timeout:g} s "
                       f"(see {scheduler['log']})")


def _wait_for_workers(address: str, count: int, started: list[dict[str, Any]],
                      timeout: float) -> str:
    """Wait until ``count`` workers joined the scheduler at ``address``; returns its dashboard."""
    from distributed import Client

    with Client(address, timeout=f"{connect_timeout()}s") as client:
        deadline = time.monotonic() + timeout
        while len(client.scheduler_info(n_workers=-1)["workers"]) < count:
            if time.monotonic() > deadline:
                raise ClusterError(f"{count} dask workers did not start within {timeout:g} s "
                                   f"(see {started[-1]['log']})")
            for process in started:
                _check_started(process)
            time.sleep(0.1)
        return str(client.dashboard_link or "")


def _check_started(process: dict[str, Any]) -> None:
    if not _alive(process):
        lines = Path(process["log"]).read_text(errors="replace").strip().splitlines()
        last = f": {lines[-1].strip()}" if lines else ""
        raise ClusterError(f"the dask {process['role']} process exited{last} "
                           f"(see {process['log']})")


def _alive(process: dict[str, Any]) -> bool:
    """Whether the recorded ``process`` still runs (the same process, not a reused pid)."""
    import psutil

    try:
        found = psutil.Process(int(process["pid"]))
        return (abs(found.create_time() - float(process["created"])) < 0.5
                and found.status() != psutil.STATUS_ZOMBIE)
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def _stop(processes: list[dict[str, Any]], grace: float = 10.0) -> None:
    """Stop ``processes`` (workers first) and everything they started: SIGTERM, then SIGKILL."""
    for process in sorted(processes, key=lambda p: p["role"] == "scheduler"):
        if not _alive(process):
            continue
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(int(process["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(process) and time.monotonic() < deadline:
            time.sleep(0.05)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(int(process["pid"]), signal.SIGKILL)  # the group: leftover worker processes


def _write_state(folder: Path, state: dict[str, Any]) -> None:
    partial = folder / f".{STATE_FILE}.{os.getpid()}"
    partial.write_text(json.dumps(state, indent=1))
    os.replace(partial, folder / STATE_FILE)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One ``up`` or ``down`` at a time in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "cluster.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
