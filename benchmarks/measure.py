"""Shared measurement helpers: wall time and peak RSS of a whole process tree.

Dask workers and DataLoader workers are child processes, so peak memory is
the largest sum of RSS over a process and all its descendants, sampled
every few milliseconds while the command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

OUT_DIR = Path(__file__).parent / "out"


@dataclass
class Measurement:
    """Wall time (s) and peak tree RSS (bytes) of one run."""

    seconds: float
    peak_rss: int
    returncode: int = 0
    stdout: str = ""
    cpu_seconds: float = 0.0

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss / 2**20


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _tree_cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


class _Sampler(threading.Thread):
    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, _tree_rss(self.proc))
            except psutil.Error:
                return
            time.sleep(self.interval)


def run_measured(cmd: Sequence[str], *, interval: float = 0.02, check: bool = True) -> Measurement:
    """Run ``cmd`` in a subprocess; return its wall time, CPU time and peak tree RSS.

    CPU time (user + system, every descendant included once reaped) is the
    steadier figure on a shared machine.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = _Sampler(proc.pid, interval)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return Measurement(seconds, sampler.peak, proc.returncode, out, cpu)


def measure_call(func: Callable[[], Any], *, interval: float = 0.02) -> tuple[Measurement, Any]:
    """Run ``func()`` in this process; its wall time, the peak RSS and CPU time of this
    process tree (dask workers of an embedded cluster included) and its result."""
    sampler = _Sampler(os.getpid(), interval)
    cpu = _tree_cpu(sampler.proc)
    sampler.start()
    t0 = time.perf_counter()
    try:
        value = func()
    finally:
        seconds = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
        cpu = _tree_cpu(sampler.proc) - cpu
    return Measurement(seconds, sampler.peak, cpu_seconds=cpu), value


def python_cmd(code: str) -> list[str]:
    """A command running ``code`` in a fresh interpreter of this environment."""
    return [sys.executable, "-c", code]


def report(name: str, results: dict[str, Any], rows: list[tuple[str, ...]],
           header: tuple[str, ...]) -> Path:
    """Print a small table and write ``benchmarks/out/<name>.json``; return the JSON path."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    OUT_DIR.mkdir(exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, default=lambda o: asdict(o)))
    print(f"results: {path}")
    return path


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of ``func()`` and its result."""
    t0 = time.perf_counter()
    value = func()
    return time.perf_counter() - t0, value


def add_scratch_options(parser: argparse.ArgumentParser) -> None:
    """The ``--dir`` and ``--keep`` options every benchmark takes."""
    parser.add_argument("--dir", default=None, help="scratch folder (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch files")


@contextmanager
def scratch_dir(name: str, args: argparse.Namespace) -> Iterator[Path]:
    """The scratch folder of a benchmark (``args.dir`` or a new temp folder), removed
    afterwards unless ``args.keep``."""
    scratch = Path(args.dir or tempfile.mkdtemp(prefix=f"vol-bench-{name}-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        yield scratch
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
