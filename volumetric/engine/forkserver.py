"""Worker processes forked from a server that has already imported what block tasks need.

A spawned worker process starts a fresh interpreter and imports distributed
(about 0.25 s of CPU) before it can join, then zarr and the operation's own
modules on its first task, each worker again. The embedded cluster instead
forks its workers from multiprocessing's *forkserver*: one clean,
single-threaded process that imports those modules once, while the command
is still preparing its run, so that each worker starts as a copy that has
them all (the start method distributed's own test suite uses).

A forked worker keeps what the server read when it started: glibc's
allocator settings (``MALLOC_*``) and the BLAS thread counts. The server
therefore starts with the workers' environment
(:data:`volumetric.engine.cluster.WORKER_ENVIRON`), and each worker sets,
as it starts, the variables this process has set or changed since (see
:func:`environ_changes`).
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Mapping
from contextlib import suppress

# what every block task needs, whatever the operation
PRELOAD = ("distributed", "numpy", "zarr", "volumetric.engine.batches", "volumetric.io.sources")

log = logging.getLogger("volumetric")
_server_environ: dict[str, str] | None = None  # os.environ as the server started with it


def forkserver_available() -> bool:
    """Whether workers are forked from a forkserver here: on Linux.

    Windows cannot fork; on macOS system libraries (Accelerate, used by
    numpy) may start threads when imported, and a forked copy would keep
    their locks without the threads.
    """
    return (sys.platform.startswith("linux")
            and "forkserver" in multiprocessing.get_all_start_methods())


def preloaded_modules() -> list[str]:
    """:data:`PRELOAD` and the volumetric modules this process has imported, after the main script.

    By the time a block operation prepares its run, the command has imported
    the operation and its kernels, so the workers get them too. The main
    script comes first, as in a spawned worker: whatever it sets up for
    imports holds for the rest.
    """
    ours = sorted(name for name in sys.modules if name.startswith("volumetric."))
    return list(dict.fromkeys(["__main__", *PRELOAD, *ours]))


def start_forkserver(environ: Mapping[str, object]) -> bool:
    """Start this process's forkserver, with ``environ`` set and :func:`preloaded_modules` imported.

    It imports in the background. Nothing happens when it is already running:
    its modules and environment are those of its first start. A variable
    already set in this process keeps its value.

    Parameters
    ----------
    environ : mapping
        Variables the server (and so every worker forked from it) starts with.

    Returns
    -------
    bool
        Whether the server runs; false off Linux (see :func:`forkserver_available`)
        and where it could not start (e.g. no writable temporary folder for its
        socket): workers are then spawned.
    """
    global _server_environ
    from multiprocessing import forkserver

    if not forkserver_available():
        return False
    multiprocessing.get_context("forkserver").set_forkserver_preload(preloaded_modules())
    added = {key: str(value) for key, value in environ.items() if key not in os.environ}
    os.environ.update(added)
    try:
        forkserver.ensure_running()
    except OSError as exc:
        log.debug("no forkserver (%s): worker processes are spawned", exc)
        return False
    finally:
        for key in added:
            del os.environ[key]
    if _server_environ is None:
        _server_environ = {**os.environ, **added}
        atexit.register(_stop_server)
    import distributed.utils

    # else distributed imports its optional packages (pandas...) here, to preload them in a
    # server that has already started
    distributed.utils._forkserver_preload_set = True
    return True


def _stop_server() -> None:
    """End the server and reap it, so that its CPU time (its reaped workers' included) counts
    as this process's children's, as spawned workers' does.

    SIGTERM ends it at once: it has nothing to save, and a regular stop would
    wait for it to finalise all the modules it imported.
    """
    from multiprocessing import forkserver

    with suppress(Exception):  # private attributes, there since Python 3.4
        pid = forkserver._forkserver._forkserver_pid
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)


def environ_changes() -> dict[str, str]:
    """This process's variables that the forkserver did not start with, or with other values."""
    started = _server_environ or {}
    return {key: value for key, value in os.environ.items() if started.get(key) != value}
