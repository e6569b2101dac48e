"""Naming a dask scheduler and checking that it answers, within bounded time.

What ``--cluster`` may name is :mod:`volumetric.engine.targets`; here a
scheduler address is read (given, or from a scheduler JSON file as written by
``dask scheduler --scheduler-file``) and checked. The environment variable
``VOLUMETRIC_CLUSTER`` supplies the default of ``--cluster``,
``VOLUMETRIC_CONNECT_TIMEOUT`` the seconds to wait for a scheduler (5), and
``VOLUMETRIC_SCHEDULER_TIMEOUT`` the seconds a running job waits for a
scheduler that stopped answering before it gives up (60).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from volumetric.errors import ClusterError

CLUSTER_ENV = "VOLUMETRIC_CLUSTER"
CONNECT_TIMEOUT_ENV = "VOLUMETRIC_CONNECT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT = 5.0
SCHEDULER_TIMEOUT_ENV = "VOLUMETRIC_SCHEDULER_TIMEOUT"
DEFAULT_SCHEDULER_TIMEOUT = 60.0


def connect_timeout() -> float:
    """Seconds to wait for a scheduler: ``$VOLUMETRIC_CONNECT_TIMEOUT``, else 5."""
    return _seconds(CONNECT_TIMEOUT_ENV, DEFAULT_CONNECT_TIMEOUT)


def scheduler_timeout() -> float:
    """Seconds a job waits for a silent scheduler: ``$VOLUMETRIC_SCHEDULER_TIMEOUT``, else 60."""
    return _seconds(SCHEDULER_TIMEOUT_ENV, DEFAULT_SCHEDULER_TIMEOUT)


def lost_scheduler(address: str) -> ClusterError:
    """The error that ends a run whose scheduler at ``address`` went away."""
    return ClusterError(f"lost the dask scheduler at {address}; rerun the same command to resume")


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


def read_address(given: str, named: str) -> str:
    """The scheduler address that ``given`` is, or that the scheduler file ``given`` names.

    Parameters
    ----------
    given : str
        A scheduler address (``tcp://host:8786``, ``host:8786``) or the path of
        a scheduler JSON file.
    named : str
        How ``given`` was named, for messages (``--cluster X``).

    Raises
    ------
    ClusterError
        A missing or unreadable scheduler file, or an address without a port.
    """
    is_file = given.lower().endswith(".json") or os.path.isfile(given)
    address = _read_scheduler_file(given) if is_file else given
    try:
        _host_port(address)
    except ValueError:
        if is_file:
            problem = f"scheduler file {given} names {address!r}, not a scheduler address"
        else:
            problem = (f"{named}: not 'local', 'local:N', a scheduler address, an existing "
                       "scheduler file or a profile name")
        raise ClusterError(f"{problem} (an address needs its port: tcp://host:8786)") from None
    return address


def check_scheduler(address: str, seconds: float) -> None:
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
        reply = ask_scheduler(address, {"op": "identity"}, seconds)
    except (TimeoutError, asyncio.TimeoutError):
        raise ClusterError(f"the server at {address} did not answer within {seconds:g} s: "
                           "is it a dask scheduler?") from None
    except Exception:  # whatever a server that speaks another protocol makes the comm raise
        reply = None
    if not (isinstance(reply, dict) and reply.get("type") == "Scheduler"):
        raise ClusterError(f"the server at {address} is not a dask scheduler")


def ask_scheduler(address: str, message: dict[str, Any], seconds: float) -> Any:
    """The reply of the scheduler at ``address`` to ``message`` (e.g. ``{"op": "identity"}``).

    Raises
    ------
    TimeoutError
        No reply within ``seconds`` (connecting and answering).
    """
    return in_thread(lambda: asyncio.run(_ask(address, message, seconds)), 2 * seconds)


async def _ask(address: str, message: dict[str, Any], seconds: float) -> Any:
    from distributed.comm import connect

    async def ask() -> Any:
        comm = await connect(address, timeout=seconds)
        try:
            await comm.write({**message, "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    return await asyncio.wait_for(ask(), seconds)


def in_thread(call: Callable[[], Any], seconds: float) -> Any:
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
