"""Which device a model runs on: ``--device`` of ``vol predict`` and ``vol train``."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from volumetric.errors import InputError

log = logging.getLogger("volumetric")


def resolve_device(name: str, *, check: bool = True) -> str:
    """Turn ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` into a usable torch device name.

    Parameters
    ----------
    name : str
        The device asked for.
    check : bool
        Check that a CUDA device exists here (skip it where another machine runs the model).

    Raises
    ------
    InputError
        An unknown name, or CUDA asked for where it is not available.
    """
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise InputError(f"unknown --device {name!r}; choose auto, cpu, cuda or cuda:N")
    if not check:
        return name
    if not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise InputError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    return name


def cuda_available() -> bool:
    """Whether torch sees a CUDA device in this process (asked of cluster workers)."""
    import torch

    return bool(torch.cuda.is_available())


def auto_device(workers: Mapping[str, tuple[bool, Mapping[str, float]]], *,
                resource: str = "GPU") -> str:
    """What ``--device auto`` means on a cluster, from its workers' answers.

    Parameters
    ----------
    workers : mapping
        ``{address: (the worker has CUDA, the resources it offers)}``, as
        :func:`volumetric.engine.ask_workers` returns for :func:`cuda_available`.
    resource : str
        The resource a worker offers per GPU; model tasks need one.

    Returns
    -------
    str
        ``"cuda"`` when some worker has CUDA and offers ``resource``, else ``"cpu"``.
    """
    if any(cuda and offered.get(resource, 0) >= 1 for cuda, offered in workers.values()):
        return "cuda"
    if any(cuda for cuda, _ in workers.values()):
        log.warning("--device auto: the workers have CUDA but none offers the resource %s, so "
                    "the model runs on their CPUs; start them with --resources %s=1 to use "
                    "their GPUs", resource, resource)
    return "cpu"
