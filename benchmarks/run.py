"""Run every benchmark (``make bench``), each in its own process, one after the other.

    python -m benchmarks.run [--quick] [--only convert,predict]

Full sizes are the ones recorded in ``benchmarks/README.md`` (the whole set
takes tens of minutes on 2 cores); ``--quick`` runs small versions as a
smoke test. Each benchmark prints its table and writes
``benchmarks/out/<name>.json``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

# name -> (full-size arguments, quick arguments)
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "startup": ([], ["--rounds", "2"]),
    "engine": ([], ["--blocks", "10000"]),
    "codec": ([], ["--rounds", "2", "--tasks", "2"]),
    "convert": ([], ["--gib", "0.25"]),
    "tiff_source": ([], ["--gib", "0.25"]),
    "discover": (["--trees", "3"], ["--shape", "512,512,512", "--repeat", "1"]),
    "distance": ([], ["--side", "256"]),
    "predict": ([], ["--quick"]),
    "loader": ([], ["--side", "128", "--patches", "64"]),
    "align": ([], ["--side", "96", "--depth", "10", "--frames", "6", "--tilt", "6"]),
    "scale": ([], ["--blocks", "500,4000", "--distance-blocks", "200,800"]),
    "cluster": ([], ["--side", "128", "--predict-shape", "64,128,128", "--repeats", "1"]),
    "block_costs": ([], ["--repeats", "1"]),
    "export": ([], ["--gib", "0.25"]),
    "evaluate_objects": ([], ["--shape", "256,256,256"]),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--only", default=None, help="comma-separated benchmark names")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    failed = []
    for name in names:
        full, quick = BENCHMARKS[name]
        cmd = [sys.executable, "-m", f"benchmarks.{name}", *(quick if args.quick else full)]
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.monotonic()
        if subprocess.run(cmd).returncode != 0:
            failed.append(name)
        print(f"=== {name}: {time.monotonic() - t0:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
