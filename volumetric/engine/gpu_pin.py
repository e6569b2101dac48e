"""A worker preload that gives each worker process of a multi-GPU job its own GPUs.

A job (or ``vol cluster up --gpus N``) that starts several worker processes
with ``dask worker --nworkers P`` names them ``NAME-0`` ... ``NAME-(P-1)``;
every process sees every GPU of the job. Started with ``--preload
volumetric.engine.gpu_pin`` and the environment ``VOLUMETRIC_JOB_WORKERS=P``
and ``VOLUMETRIC_GPU_SLOTS=K``, worker ``i`` keeps only the ``i``-th K of
the visible GPUs (``CUDA_VISIBLE_DEVICES``), before anything starts CUDA.
"""

from __future__ import annotations

import logging
import os
from typing import Any

JOB_WORKERS_ENV = "VOLUMETRIC_JOB_WORKERS"
GPU_SLOTS_ENV = "VOLUMETRIC_GPU_SLOTS"
log = logging.getLogger("volumetric")


def pinned_devices(name: str, workers: int, slots: int, visible: str | None) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` of the worker process ``name``, or None to leave it.

    Parameters
    ----------
    name : str
        The worker's name; with ``workers > 1`` it ends in ``-i``, its index in the job.
    workers : int
        Worker processes of the job.
    slots : int
        GPUs of each worker process.
    visible : str, optional
        The job's ``CUDA_VISIBLE_DEVICES`` (None: devices ``0 .. workers * slots - 1``).

    Examples
    --------
    >>> pinned_devices("job-1", 2, 1, None)
    '1'
    >>> pinned_devices("job-1", 2, 2, "4,5,6,7")
    '6,7'
    >>> pinned_devices("job", 1, 2, None) is None
    True
    """
    if workers <= 1:
        return None
    index = int(name.rsplit("-", 1)[-1])
    devices = visible.split(",") if visible else [str(i) for i in range(workers * slots)]
    return ",".join(devices[index * slots:(index + 1) * slots])


def dask_setup(worker: Any) -> None:
    """Pin the starting ``worker`` to its GPUs (dask calls this for ``--preload``)."""
    workers = int(os.environ.get(JOB_WORKERS_ENV, "1"))
    slots = int(os.environ.get(GPU_SLOTS_ENV, "1"))
    try:
        devices = pinned_devices(str(worker.name), workers, slots,
                                 os.environ.get("CUDA_VISIBLE_DEVICES"))
    except ValueError:
        log.warning("worker %s: no index in its name, GPUs not pinned", worker.name)
        return
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices
