"""Claiming an output path: never over an input, never over a file without ``overwrite``.

Every file or store an operation writes goes through :func:`check_apart`
(no output is, holds or lies inside an input) and, for plain files,
:func:`claim_file` (an existing file is replaced only when asked). Files are
then written through :func:`replacing`, so that an interrupted write leaves
the old file, or none, but never half a file under the final name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from volumetric.errors import DestinationError, InputError


def check_writable(dst: str | Path) -> Path:
    """Check that ``dst`` can be created: its parent exists and is writable."""
    dst = Path(dst)
    parent = dst.resolve().parent
    if not parent.is_dir():
        raise DestinationError(f"cannot write {dst}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DestinationError(f"cannot write {dst}: folder {parent} is not writable")
    return dst


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def check_apart(dst: str | Path, others: Iterable[str | Path | None], *,
                role: str = "input") -> None:
    """Refuse an output ``dst`` that is, holds or lies inside one of ``others``.

    Symbolic links are followed and hard links to the same file recognised,
    so no other name of an input slips through.

    Parameters
    ----------
    dst : str or Path
        The output file or folder.
    others : iterable of paths
        Paths ``dst`` must stay apart from (None entries are skipped).
    role : str
        What ``others`` are, for the message (``"input"``, ``"output"``).

    Raises
    ------
    InputError
        ``dst`` overlaps one of ``others``.

    Examples
    --------
    >>> check_apart("/data/out.zarr", ["/data/raw.zarr"])
    >>> check_apart("/data/raw.zarr/0/zarr.json", ["/data/raw.zarr"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    volumetric.errors.InputError: the output /data/raw.zarr/0/zarr.json lies inside the input ...
    """
    dst = Path(dst)
    out = dst.resolve()
    for other in others:
        if other is None:
            continue
        given = Path(other).resolve()
        if out == given or _same_file(out, given):
            raise InputError(f"the output {dst} is the same path as the {role} {other}")
        if out in given.parents:
            raise InputError(f"the output {dst} contains the {role} {other}; choose another output")
        if given in out.parents:
            raise InputError(f"the output {dst} lies inside the {role} {other}; "
                             "choose another output")


def require_suffix(path: str | Path, suffixes: Sequence[str], what: str) -> Path:
    """``path`` as a Path if its suffix is one of ``suffixes``, else an :class:`InputError`."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{path}: the {what} file name must end with {', '.join(suffixes)}")
    return path


def claim_file(
    path: str | Path,
    *,
    inputs: Iterable[str | Path | None] = (),
    outputs: Iterable[str | Path | None] = (),
    overwrite: bool = False,
    suffixes: Sequence[str] = (),
    what: str = "output",
) -> Path:
    """Check, before anything is written, that the file ``path`` may be written.

    Parameters
    ----------
    path : str or Path
        The file to write.
    inputs : iterable of paths
        The operation's inputs: ``path`` may not be one, nor lie inside one.
    outputs : iterable of paths
        The operation's other outputs (e.g. the store a preview belongs to).
    overwrite : bool
        Allow replacing an existing file.
    suffixes : sequence of str
        Accepted file name endings (lower case, with the dot); empty: any.
    what : str
        The file's role, for messages (``"--png"``, ``"gallery"``).

    Returns
    -------
    Path

    Raises
    ------
    InputError
        A file name without an accepted suffix, or a path overlapping an input.
    DestinationError
        A folder, an existing file without ``overwrite``, or an unwritable folder.
    """
    path = Path(path)
    check_writable(path)
    check_apart(path, inputs)
    check_apart(path, outputs, role="output")
    if suffixes:
        require_suffix(path, suffixes, what)
    if path.is_dir():
        raise DestinationError(f"{what} {path} is a folder; refusing to replace it")
    if path.exists() and not overwrite:
        raise DestinationError(f"{path} already exists; pass --overwrite to replace it")
    return path


@contextmanager
def replacing(paths: Sequence[str | Path], *, overwrite: bool = False) -> Iterator[list[Path]]:
    """Yield temporary paths next to ``paths``; move them into place together on success.

    Raises
    ------
    DestinationError
        An output exists (and ``overwrite`` is false) or is a folder, or its
        folder cannot be written.
    """
    targets = [claim_file(p, overwrite=overwrite) for p in paths]
    temps = [t.with_name(f".{t.stem}.partial{t.suffix}") for t in targets]  # writers go by suffix
    try:
        yield temps
        for temp, target in zip(temps, targets):
            os.replace(temp, target)
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
