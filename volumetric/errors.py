"""Errors caused by the user's input.

The CLI prints a :class:`VolumetricError` as one line on stderr and exits
with status 2; any other exception is a bug and keeps its traceback.
"""


class VolumetricError(Exception):
    """Base class for problems with the user's input, arguments or stores."""


class InputError(VolumetricError):
    """A source or argument that cannot be used as given."""


class DestinationError(VolumetricError):
    """An output location that cannot be written as asked."""


class LayoutMismatchError(DestinationError):
    """A resumable run whose stored layout differs from the requested one."""


class BlockError(VolumetricError):
    """A block task failed because of its input (the message names the block)."""


class ClusterError(VolumetricError):
    """A dask cluster (``--cluster``) that cannot be named or reached."""
