"""Paths as block tasks need them: absolute.

Block tasks open their inputs and outputs in the worker processes. On an
external cluster (``--cluster``) those run in another folder, often on
another machine with the same shared file system, where a relative path
names another file or none. Every operation therefore makes the paths of
its images absolute on entry, before it opens a source or builds a task.

Comparing a path with one stored earlier (``vol train --resume``) is
another matter: :func:`comparable_path` resolves symbolic links too, so two
spellings of one file compare equal.
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


def comparable_path(path: str | os.PathLike[str]) -> str:
    """``path`` made absolute with symbolic links resolved, for comparing paths only.

    Two spellings of one file (relative, through a linked folder) give the
    same string. Nothing is opened by this name: what a run opens and stores
    is the :func:`absolute` path, with the links the user named.

    Examples
    --------
    >>> import os
    >>> comparable_path("raw.zarr") == os.path.join(os.path.realpath(os.getcwd()), "raw.zarr")
    True
    """
    return os.path.realpath(os.fspath(path))
