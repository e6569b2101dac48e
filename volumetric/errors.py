"""Errors caused by the user's input.

The CLI prints a :class:`VolumetricError` as one line on stderr and exits
with status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class VolumetricError(Exception):
    """Base class for problems with the user's input, arguments or stores."""


class InputError(VolumetricError):
    """A source or argument that cannot be used as given."""


class DestinationError(VolumetricError):
    """An output location that cannot be written as asked."""


class LayoutMismatchError(DestinationError):
    """A resumable run whose stored layout differs from the requested one."""


class DamagedChunkError(InputError):
    """A stored chunk (or shard) file that cannot be decoded.

    Parameters
    ----------
    message : str
        The whole message, naming the file.
    file : str
        The damaged file.
    folder : str
        The Zarr array holding it (whose files an input's fingerprint covers).
    """

    def __init__(self, message: str, file: str, folder: str):
        super().__init__(message)
        self.file, self.folder = file, folder

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return type(self), (str(self), self.file, self.folder)


class BlockError(VolumetricError):
    """Block tasks failed because of their input (the message names the first block).

    Attributes
    ----------
    causes : list of VolumetricError
        What each failed block raised, in the order they failed.
    """

    causes: list[VolumetricError]

    def __init__(self, message: str, causes: list[VolumetricError] | None = None):
        super().__init__(message)
        self.causes = list(causes or [])


class ClusterError(VolumetricError):
    """A dask cluster (``--cluster``) that cannot be named or reached."""


class MissingExtraError(VolumetricError, ImportError):
    """A feature whose optional dependencies (an extra, e.g. ``volumetric[ml]``) are not installed.

    It is an :class:`ImportError` too, so code that tolerates a missing
    package keeps working; the CLI prints it as one line with exit status 2.
    """


def check_choice(value: str | None, choices: Iterable[str], what: str) -> None:
    """Refuse a ``value`` that is not one of ``choices``; None (not given) passes.

    Parameters
    ----------
    value : str or None
        What was asked for.
    choices : iterable of str
        The accepted values, in the order the message lists them.
    what : str
        What the value names, e.g. ``"loss"`` or ``"--blend"``.

    Raises
    ------
    InputError
        ``unknown WHAT 'VALUE'; choose one of A, B, C``.

    Examples
    --------
    >>> check_choice("adam", ("adam", "adamw"), "optimizer")
    >>> check_choice("sgd", ("adam", "adamw"), "optimizer")
    Traceback (most recent call last):
    ...
    volumetric.errors.InputError: unknown optimizer 'sgd'; choose one of adam, adamw
    """
    choices = tuple(choices)
    if value is not None and value not in choices:
        raise InputError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
