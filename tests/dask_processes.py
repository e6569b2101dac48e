"""Real dask processes for tests, on 127.0.0.1: a scheduler and its workers started here, and
``vol`` run as a command against them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from volumetric.engine.journal import JOURNAL_DIR
from volumetric.engine.scheduler import CLUSTER_ENV, CONNECT_TIMEOUT_ENV
from volumetric.engine.standing import STATE_ENV

VOL = str(Path(sys.executable).with_name("vol"))
DASK = [sys.executable, "-m", "dask"]  # this environment's, whatever the scripts' shebangs
TESTS = str(Path(__file__).parent)


def vol_env(**extra: str) -> dict[str, str]:
    """This process's environment without a default cluster or state folder, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in (CLUSTER_ENV, STATE_ENV)}
    env[CONNECT_TIMEOUT_ENV] = "10"
    return {**env, **extra}


def worker_zarr_config(client: Any, key: str = "threading.max_workers") -> list[Any]:
    """zarr's setting ``key`` in each worker of ``client``."""

    def setting() -> Any:  # nested: sent by value to workers that cannot import tests
        import zarr

        return zarr.config.get(key)

    return list(client.run(setting).values())


def run_vol(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``vol ARGS`` as a command; its exit status and output."""
    return subprocess.run([VOL, *map(str, args)], env=env or vol_env(), capture_output=True,
                          text=True, timeout=180)


def start_vol(*args: object, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``vol ARGS`` started in a session (process group) of its own; stdout and stderr piped."""
    return subprocess.Popen([VOL, *map(str, args)], env=env or vol_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def same_image(a: Path, b: Path) -> None:
    """Assert that two OME-Zarr images hold the same level 0 and attributes."""
    first, second = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    assert np.array_equal(first["0"][:], second["0"][:])
    assert first.attrs.asdict() == second.attrs.asdict()


def done_markers(out: Path) -> set[str]:
    """``JOB/KEY`` of every block the journal of the output ``out`` records as done."""
    from interruption import done_keys

    done = out / JOURNAL_DIR / "done"
    jobs = [p.name for p in done.iterdir() if p.is_dir()] if done.is_dir() else []
    return {f"{job}/{key}" for job in jobs for key in done_keys(out, job)}


def wait_for_done(out: Path, count: int, run: subprocess.Popen, timeout: float = 120) -> int:
    """Wait until the run writing ``out`` has marked ``count`` blocks done; returns how many."""
    deadline = time.monotonic() + timeout
    while True:
        done = len(done_markers(out))
        if done >= count:
            return done
        assert run.poll() is None, f"the run ended first: {run.communicate()[1]}"
        assert time.monotonic() < deadline, f"{count} blocks were not done in {timeout} s"
        time.sleep(0.02)


def wait_for_scheduler_file(path: Path, process: subprocess.Popen) -> str:
    """The address a starting ``dask scheduler`` writes to its scheduler file."""
    deadline = time.monotonic() + 60
    while True:
        with suppress(OSError, ValueError, KeyError):
            return str(json.loads(path.read_text())["address"])
        assert process.poll() is None, "the dask scheduler exited"
        assert time.monotonic() < deadline, "the dask scheduler did not start"
        time.sleep(0.1)


@dataclass
class DaskProcesses:
    """A running ``dask scheduler`` and its ``dask worker`` processes."""

    folder: Path
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]
    address: str

    @property
    def scheduler_file(self) -> Path:
        return self.folder / "scheduler.json"

    def worker_pids(self) -> dict[str, int]:
        """``{worker address: pid}`` of the worker processes (not their nannies)."""
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            return client.run(os.getpid)

    def stop(self) -> None:
        """Kill every process started (workers first) and reap them."""
        for process in [*self.workers, self.scheduler]:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, 9)  # the nannies' worker processes too
            process.wait()


@contextmanager
def dask_processes(folder: Path, workers: int = 2, *, nanny: bool = True,
                   env: dict[str, str] | None = None) -> Iterator[DaskProcesses]:
    """A dask scheduler and ``workers`` one-thread workers, each in a session of its own.

    The workers import the test modules (``PYTHONPATH``), so tasks defined in them run.
    """
    folder.mkdir(parents=True, exist_ok=True)
    environ = {**os.environ, **(env or {}), "PYTHONPATH": TESTS}
    options: dict = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": folder,
                     "env": environ, "start_new_session": True}
    scheduler = subprocess.Popen(
        [*DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(folder / "scheduler.json")], **options)
    started = DaskProcesses(folder, scheduler, [], "")
    try:
        started.address = wait_for_scheduler_file(folder / "scheduler.json", scheduler)
        for _ in range(workers):
            started.workers.append(subprocess.Popen(
                [*DASK, "worker", started.address, "--nthreads", "1", "--host", "127.0.0.1",
                 "--no-dashboard", *([] if nanny else ["--no-nanny"])], **options))
        from distributed import Client

        with Client(started.address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=60)
        yield started
    finally:
        started.stop()
