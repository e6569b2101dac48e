"""What a running cluster is: its workers, threads, memory, GPUs and package versions."""

from __future__ import annotations

from collections import Counter
from typing import Any

from volumetric.engine.scheduler import check_scheduler, connect_timeout, in_thread
from volumetric.errors import ClusterError

PACKAGES = ("volumetric", "dask", "distributed", "zarr", "numpy", "torch")


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
