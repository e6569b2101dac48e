"""Fingerprints of folder inputs: what tells a resumed run that a store was rewritten.

A Zarr array rewritten in place (``a[:] = a[:] // 2``) keeps its metadata
files; only its chunk files change. :func:`tree_fingerprint` therefore digests
the relative path, size and modification time (ns) of every file below a
folder, which changes whenever any chunk is written, added or removed.

Cost: one ``stat`` per file (``os.scandir`` lists names and types without
extra system calls, but size and time need a ``stat`` on Linux) plus a
SHA-256 over about 40 bytes per file. Measured on a local disk with a warm
cache: 26 ms for 10^4 chunk files, 0.24 s for 10^5 (about 2.5 us per file),
so a store of 10^6 chunk files takes seconds; a cold cache or a network file
system costs one metadata round trip per file and can take minutes there.
It is computed once per run, on the client, when an operation builds its
layout (see :class:`volumetric.engine.Journal`), never inside a task.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

# Folders that hold no data of the store: volumetric's own journal.
SKIPPED = frozenset({".volumetric"})


def _entries(folder: str) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def tree_fingerprint(path: str | os.PathLike[str],
                     stats: Mapping[str, tuple[int, int]] | None = None) -> dict[str, Any]:
    """Digest the names, sizes and modification times of every file below ``path``.

    Parameters
    ----------
    path : str or path-like
        A folder, e.g. a Zarr array or store. Folders named in ``SKIPPED``
        are left out; symbolic links are followed.
    stats : mapping, optional
        ``{relative path: (size, mtime_ns)}`` digested in place of those
        files' own: the fingerprint the folder had when they were so (e.g.
        before damaged chunk files were repaired).

    Returns
    -------
    dict
        ``files`` (count), ``bytes`` (total size) and ``sha256`` (hex digest
        of one ``relative path, size, mtime_ns`` line per file, in sorted order).
    """
    root = os.fspath(path)
    digest = hashlib.sha256()
    files = total = 0
    stack = [""]
    while stack:
        rel = stack.pop()
        lines = []
        subfolders = []
        for entry in _entries(os.path.join(root, rel) if rel else root):
            name = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir():
                if entry.name not in SKIPPED:
                    subfolders.append(name)
                continue
            if stats is not None and name in stats:
                size, mtime_ns = stats[name]
            else:
                st = entry.stat()
                size, mtime_ns = st.st_size, st.st_mtime_ns
            lines.append(f"{name}\0{size}\0{mtime_ns}\n")
            files += 1
            total += size
        digest.update("".join(lines).encode())
        stack.extend(reversed(subfolders))
    return {"files": files, "bytes": total, "sha256": digest.hexdigest()}
