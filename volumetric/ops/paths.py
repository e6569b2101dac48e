"""Paths as block tasks need them: absolute.

Block tasks open their inputs and outputs in the worker processes. On an
external cluster (``--cluster``) those run in another folder, often on
another machine with the same shared file system, where a relative path
names another file or none. Every operation therefore makes the paths of
its images absolute on entry, before it opens a source or builds a task.
"""

from __future__ import annotations

import os


def absolute(path: str | os.PathLike[str]) -> str:
    """``path`` made absolute against this process's working folder (symbolic links kept).

    Examples
    --------
    >>> import os
    >>> absolute("raw.zarr") == os.path.join(os.getcwd(), "raw.zarr")
    True
    """
    return os.path.abspath(os.fspath(path))
