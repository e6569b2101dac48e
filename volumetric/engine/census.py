"""What a running cluster is: its workers, threads, memory, GPUs and package versions.

Before a command runs on a scheduler it did not start, :func:`check_versions`
compares the versions of the packages that shape the results and the stored
data (:data:`MATCHED`) on every worker with this process's: block tasks
computed by another volumetric, or written by another zarr, would make a
store that no run could make alone.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from volumetric.engine.scheduler import ask_scheduler, check_scheduler, connect_timeout, in_thread
from volumetric.errors import ClusterError

PACKAGES = ("volumetric", "dask", "distributed", "zarr", "numpy", "torch")
MATCHED = ("volumetric", "zarr", "torch", "numpy")
log = logging.getLogger("volumetric")


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """The installed version of each of ``packages`` in this process (None: not installed).

    Read from the installed distributions' metadata, as distributed reads a
    worker's, without importing the packages.
    """
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def version_mismatch(here: dict[str, str | None],
                     workers: dict[str, dict[str, str | None]]) -> str | None:
    """What differs between the versions ``here`` and those of the ``workers``, or None.

    Parameters
    ----------
    here : dict
        ``{package: version}`` of this process (None: not installed).
    workers : dict
        ``{worker address: {package: version}}``.

    Examples
    --------
    >>> version_mismatch({"numpy": "2.4.6"}, {"tcp://w:1": {"numpy": "2.4.6"}}) is None
    True
    >>> version_mismatch({"numpy": "2.4.6"}, {"tcp://w:1": {"numpy": "1.26.4"}})
    'numpy 2.4.6 here, 1.26.4 on tcp://w:1'
    """
    problems = []
    for package in MATCHED:
        if package not in here:
            continue
        mine = here[package]
        other = {a: v.get(package) for a, v in workers.items() if v.get(package) != mine}
        if other:
            address, version = sorted(other.items())[0]
            more = f" and {len(other) - 1} more worker(s)" if len(other) > 1 else ""
            problems.append(f"{package} {mine or 'missing'} here, {version or 'missing'} on "
                            f"{address}{more}")
    return "; ".join(problems) or None


def check_versions(address: str, seconds: float) -> None:
    """Refuse the scheduler at ``address`` when a worker has other versions of :data:`MATCHED`.

    Workers that do not answer within ``seconds`` are not compared (a warning
    says so); workers that join later are not either.

    Raises
    ------
    ClusterError
        One line naming each package whose version differs, here and on a worker.
    """
    message = {"op": "broadcast", "msg": {"op": "versions", "packages": list(MATCHED)},
               "on_error": "ignore"}
    try:
        replies = ask_scheduler(address, message, seconds)
    except (TimeoutError, OSError):
        log.warning("the package versions of the workers at %s were not compared: no answer "
                    "within %g s", address, seconds)
        return
    workers = {str(a): dict(r.get("packages", {})) for a, r in (replies or {}).items()
               if isinstance(r, dict)}
    problem = version_mismatch(package_versions(MATCHED), workers)
    if problem:
        raise ClusterError(f"the workers of the dask scheduler at {address} run other package "
                           f"versions: {problem}; install the same versions everywhere")


def cluster_info(address: str) -> dict[str, Any]:
    """Describe the cluster whose scheduler listens at ``address``.

    Parameters
    ----------
    address : str
        A scheduler address.

    Returns
    -------
    dict
        ``address``, ``dashboard``, ``workers`` (one dict each: ``address``,
        ``name``, ``threads``, ``memory``, ``gpus``, ``gpu``), totals
        ``threads``, ``memory`` and ``gpus``, and ``packages``: the versions
        of :data:`PACKAGES` ``here`` (this process), on the ``scheduler`` and
        on each worker (``workers``: ``{address: {package: version}}``).

    Raises
    ------
    ClusterError
        Nothing answers at ``address`` as a dask scheduler within the connect timeout.
    """
    from distributed import Client

    seconds = connect_timeout()
    check_scheduler(address, seconds)
    try:
        client = in_thread(lambda: Client(address, timeout=f"{seconds}s"), 3 * seconds)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the dask scheduler at {address}: {exc}") from None
    with client:
        info = client.scheduler_info(n_workers=-1)
        versions = client.get_versions(packages=list(PACKAGES))
        dashboard = client.dashboard_link
    workers = [
        {"address": a, "name": str(w.get("name", a)), "threads": int(w.get("nthreads", 0)),
         "memory": int(w.get("memory_limit") or 0),
         "gpus": int(w.get("resources", {}).get("GPU", 0)),
         "gpu": (w.get("gpu") or {}).get("name")}
        for a, w in info["workers"].items()
    ]
    workers.sort(key=lambda w: (w["name"], w["address"]))

    def packages(reply: Any) -> dict[str, str | None]:
        found = reply.get("packages", {}) if isinstance(reply, dict) else {}
        return {p: found.get(p) for p in PACKAGES}

    return {
        "address": address, "dashboard": dashboard, "workers": workers,
        "threads": sum(w["threads"] for w in workers),
        "memory": sum(w["memory"] for w in workers),
        "gpus": sum(w["gpus"] for w in workers),
        "packages": {"here": package_versions(), "scheduler": packages(versions["scheduler"]),
                     "workers": {a: packages(v) for a, v in versions["workers"].items()}},
    }


def format_cluster_info(data: dict[str, Any]) -> str:
    """``data`` from :func:`cluster_info` as a few aligned lines."""
    from dask.utils import format_bytes

    workers = data["workers"]
    lines = [
        f"scheduler  {data['address']}",
        f"dashboard  {data['dashboard'] or '-'}",
        f"workers    {len(workers)}: {plural(data['threads'], 'thread')}, "
        f"{format_bytes(data['memory'])}, {plural(data['gpus'], 'GPU')}",
    ]
    rows = [[w["name"], w["address"], plural(w["threads"], "thread"), format_bytes(w["memory"]),
             plural(w["gpus"], "GPU") + (f" ({w['gpu']})" if w["gpu"] else "")] for w in workers]
    lines += _table(rows, indent="  ")
    versions = data["packages"]
    rows = [["package", "here", "scheduler", "workers"]]
    for package in PACKAGES:
        seen = Counter(str(v.get(package)) for v in versions["workers"].values())
        on_workers = (next(iter(seen)) if len(seen) == 1 else
                      ", ".join(f"{v} ({n})" for v, n in sorted(seen.items())))
        rows.append([package, str(versions["here"].get(package)),
                     str(versions["scheduler"].get(package)), on_workers or "-"])
    return "\n".join(lines + _table(rows))


def plural(count: int, noun: str) -> str:
    """``"1 thread"``, ``"2 threads"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _table(rows: list[list[str]], indent: str = "") -> list[str]:
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
