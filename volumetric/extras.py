"""Optional dependencies: which extra of ``volumetric`` brings which package.

The core (conversion and block operations) installs without torch, ffmpeg or
matplotlib. A feature that needs one of them imports it through
:func:`require`, which turns its absence into one line naming the extra to
install::

    torch = require("torch", extra="ml")   # training, prediction, learned alignment
"""

from __future__ import annotations

import importlib
from types import ModuleType

from volumetric.errors import MissingExtraError

# extra -> what it adds, for messages and the README's install section
EXTRAS = {
    "ml": "training, prediction, patch galleries and learned alignment (torch, matplotlib, tqdm)",
    "video": "reading video files and writing MP4 movies (imageio-ffmpeg)",
    "viewer": "napari with its OME-Zarr reader",
    "gpu": "one dask worker per GPU (dask-cuda)",
    "hpc": "SLURM, PBS and LSF clusters (dask-jobqueue)",
}

# import name -> distribution name, where they differ
_DISTRIBUTIONS = {"imageio_ffmpeg": "imageio-ffmpeg", "dask_cuda": "dask-cuda",
                  "dask_jobqueue": "dask-jobqueue"}


def require(module: str, *, extra: str) -> ModuleType:
    """Import ``module``, or refuse in one line that names the extra bringing it.

    Parameters
    ----------
    module : str
        The import name, e.g. ``"torch"`` or ``"imageio_ffmpeg"``.
    extra : str
        The extra of ``volumetric`` that installs it, e.g. ``"ml"``.

    Returns
    -------
    module
        The imported module.

    Raises
    ------
    MissingExtraError
        ``module`` (or a package it needs) is not installed.

    Examples
    --------
    >>> require("json", extra="ml").__name__
    'json'
    >>> require("no_such_package_x", extra="ml")
    Traceback (most recent call last):
    ...
    volumetric.errors.MissingExtraError: this needs no_such_package_x, which is not installed; \
install the 'ml' extra: pip install 'volumetric[ml]'
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        top = missing.split(".")[0]
        wanted = _DISTRIBUTIONS.get(top, top)
        raise MissingExtraError(
            f"this needs {wanted}, which is not installed; install the {extra!r} extra: "
            f"pip install 'volumetric[{extra}]'", name=top) from None
