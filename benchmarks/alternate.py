"""Commands timed in alternation, and an earlier checkout of volumetric to time against.

On a shared machine the load changes from minute to minute, so commands to
be compared run one after the other, round after round, and each is
summarised by its median wall time and its median CPU time (the process
tree's, workers included once they are reaped).

``--before DIR`` in the benchmarks that take it runs the same commands with
the volumetric of an earlier commit, unpacked into ``DIR``
(``git archive COMMIT | tar -x -C DIR``), in the same rounds: the wrapper
written by :func:`before_python` hides this environment's editable install
of volumetric, in the command's process and in every worker process it
spawns, so that everything imports ``DIR``'s code.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

WRAPPER = '''
import sys
# drop the editable install's finder (it comes before sys.path), then import from {root!r}
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path[:0] = [{shim!r}, {root!r}]
if __name__ == "__main__":
    from volumetric_cli import main as cli
    sys.argv[0] = "vol"
    # the console script's entry point; checkouts older than main() had vol() as the entry
    getattr(cli, "main", cli.vol)()
'''


def before_python(root: Path, scratch: Path) -> list[str]:
    """The command prefix (in place of ``python -m volumetric_cli.main``) that runs ``vol``
    from the checkout ``root``."""
    shim = scratch / "before-shim"
    shim.mkdir(exist_ok=True)
    link = shim / "volumetric_cli"
    if not link.exists():
        link.symlink_to(root.resolve() / "cli")
    script = scratch / "before_vol.py"
    script.write_text(WRAPPER.format(root=str(root.resolve()), shim=str(shim)))
    return [sys.executable, str(script)]


def vol_python() -> list[str]:
    """The command prefix that runs this checkout's ``vol``."""
    return [sys.executable, "-m", "volumetric_cli.main"]


def alternate(
    commands: Mapping[str, Sequence[str]],
    rounds: int,
    *,
    before_each: Callable[[str], None] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, dict[str, float]]:
    """Run every command once per round, in order, ``rounds`` times.

    Parameters
    ----------
    commands : mapping
        Name -> command line.
    rounds : int
        Rounds (each command runs once per round).
    before_each : callable, optional
        Called with the command's name before each run (e.g. to remove an output).
    env : mapping, optional
        Extra environment variables.

    Returns
    -------
    dict
        Name -> ``{"wall_median", "wall_min", "cpu_median", "runs"}`` (seconds).
    """
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, cmd in commands.items():
            if before_each is not None:
                before_each(name)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            done = subprocess.run(list(cmd), capture_output=True, text=True,
                                  env={**os.environ, **(env or {})})
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            times[name].append((wall, cpu))
    return {name: {"wall_median": statistics.median(w for w, _ in runs),
                   "wall_min": min(w for w, _ in runs),
                   "cpu_median": statistics.median(c for _, c in runs),
                   "runs": len(runs)}
            for name, runs in times.items()}
