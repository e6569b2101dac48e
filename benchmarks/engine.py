"""Engine overhead: a no-op kernel over many blocks, done markers included.

Every block runs a kernel that does nothing, through
:func:`volumetric.engine.run_blocks` with a journal (so each block's done
marker is written, as in every real job), on an embedded cluster of
``--workers`` worker processes started beforehand. Reported: blocks per
second, and the RSS of this process (the client) before the job (the
block list built) and at its peak during the job (the futures, the
results), at ``--blocks`` and at a tenth of it, so its growth with the
block count shows. A rerun of the larger job is timed too: every
block is then skipped as done, which costs reading the journal.

Anchor (daisy's own figures for a no-op task with its block bookkeeping):
v1 about 6.5k blocks/s on 4 workers, v2 about 29k blocks/s.

    python -m benchmarks.engine [--blocks 100000] [--workers 2]
"""

from __future__ import annotations

import argparse
import gc
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks.measure import add_scratch_options, measure_call, report, scratch_dir
from volumetric.engine import Journal, run_blocks
from volumetric.geometry import BlockGrid, Box


@dataclass(frozen=True)
class NoOp:
    """A kernel that does nothing with its block."""

    def __call__(self, box: Box) -> int:
        return 0


def _grid(blocks: int) -> BlockGrid:
    """A 3D grid of exactly ``blocks`` blocks of 64^3 (a 1-voxel-deep last axis pads nothing)."""
    side = round(blocks ** (1 / 3))
    while blocks % side:
        side -= 1
    rest = blocks // side
    other = round(rest ** 0.5)
    while rest % other:
        other -= 1
    counts = (side, other, rest // other)
    return BlockGrid(tuple(64 * n for n in counts), (64, 64, 64))


class _ClientPeak(threading.Thread):
    """The peak RSS of this process (the client) while a job runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.before = self.peak = self.process.memory_info().rss
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)


def _run(client, store: Path, blocks: int) -> dict:
    grid = _grid(blocks)
    journal = Journal(store, {"benchmark": "engine", "blocks": blocks})
    journal.start(restart=True)
    boxes = list(grid.boxes())
    gc.collect()
    peak = _ClientPeak()
    peak.start()
    measured, results = measure_call(lambda: run_blocks(
        NoOp(), boxes, client=client, journal=journal, job="noop", progress=False),
        interval=0.05)
    peak.stop.set()
    peak.join()
    assert len(results) == blocks
    rerun_s = time.perf_counter()
    skipped = run_blocks(NoOp(), boxes, client=client, journal=journal, job="noop",
                         progress=False)
    rerun_s = time.perf_counter() - rerun_s
    assert not skipped
    return {"blocks": blocks, "seconds": measured.seconds,
            "blocks_per_second": blocks / measured.seconds,
            "cpu_seconds_tree": measured.cpu_seconds,
            "client_rss_before_mib": peak.before / 2**20,
            "client_peak_rss_mib": peak.peak / 2**20,
            "client_growth_mib": (peak.peak - peak.before) / 2**20,
            "rerun_all_done_seconds": rerun_s}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    add_scratch_options(parser)
    args = parser.parse_args(argv)

    from distributed import Client

    from volumetric.engine.cluster import local_cluster

    runs = []
    with scratch_dir("engine", args) as scratch, \
            local_cluster(args.workers, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        client.submit(NoOp(), None).result()  # workers import the task's module once
        for blocks in (args.blocks // 10, args.blocks):
            runs.append(_run(client, scratch / f"noop-{blocks}", blocks))
    small, large = runs
    results = {"workers": args.workers, "load_average": list(os.getloadavg()), "runs": runs,
               "client_peak_rss_growth": large["client_peak_rss_mib"]
               / small["client_peak_rss_mib"],
               "targets": {"blocks_per_second_at_least": 10_000}}
    rows = [(f"{r['blocks']}", f"{r['seconds']:.1f}", f"{r['blocks_per_second']:.0f}",
             f"{r['cpu_seconds_tree']:.1f}", f"{r['client_rss_before_mib']:.0f}",
             f"{r['client_peak_rss_mib']:.0f}", f"{r['client_growth_mib']:.1f}",
             f"{r['rerun_all_done_seconds']:.2f}") for r in runs]
    report("engine", results, rows, ("blocks", "seconds", "blocks/s", "CPU s (tree)",
                                     "client RSS before MiB", "client peak RSS MiB",
                                     "growth during the job MiB", "rerun (all done) s"))
    print(f"client peak RSS x{results['client_peak_rss_growth']:.2f} for 10x the blocks "
          "(the block list included)")
    return results


if __name__ == "__main__":
    main()
