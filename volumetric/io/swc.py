"""SWC skeletons (traced neurons): reading with line-precise errors, and writing.

An SWC file has one node per line, ``id type x y z radius parent``, with
``parent = -1`` for roots and ``#`` comments. Coordinates are ``x, y, z``
as in the file (usually physical units); :attr:`Skeleton.zyx` gives them in
the ``z, y, x`` order volumetric uses everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from volumetric.errors import InputError


@dataclass(frozen=True)
class Skeleton:
    """Nodes of one or more traced trees.

    Attributes
    ----------
    ids, types, parents : ndarray of int64, shape (n,)
    xyz : ndarray of float64, shape (n, 3)
        Node positions in ``x, y, z`` order, as stored in SWC.
    radius : ndarray of float64, shape (n,)
    """

    ids: np.ndarray
    types: np.ndarray
    xyz: np.ndarray
    radius: np.ndarray
    parents: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def zyx(self) -> np.ndarray:
        """Node positions in ``z, y, x`` order."""
        return self.xyz[:, ::-1]

    def edges(self) -> np.ndarray:
        """Pairs of row indices ``(child, parent)``, one per segment, shape (m, 2)."""
        row = {int(i): k for k, i in enumerate(self.ids)}
        pairs = [(k, row[int(p)]) for k, p in enumerate(self.parents) if int(p) in row]
        return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def read_swc(path: str | Path) -> Skeleton:
    """Read an SWC file.

    Raises
    ------
    InputError
        Missing file, a malformed line (with its line number), duplicate
        ids, or a parent that is not a node of the file.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "n.swc")
    >>> _ = open(p, "w").write("# soma\\n1 1 10 20 30 2 -1\\n2 3 12 20 30 1 1\\n")
    >>> read_swc(p).zyx[1].tolist()
    [30.0, 20.0, 12.0]
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read SWC ({exc})") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        if len(fields) < 7:
            raise InputError(f"{path}:{number}: expected 7 fields 'id type x y z radius parent', "
                             f"got {len(fields)}")
        try:
            node_id, node_type, parent = int(fields[0]), int(float(fields[1])), int(fields[6])
            x, y, z, r = (float(v) for v in fields[2:6])
        except ValueError:
            raise InputError(f"{path}:{number}: non-numeric field in {text!r}") from None
        if not all(np.isfinite((x, y, z, r))) or r < 0:
            raise InputError(f"{path}:{number}: invalid coordinates or negative radius")
        rows.append((node_id, node_type, x, y, z, r, parent, number))
    if not rows:
        raise InputError(f"{path}: no SWC nodes")
    ids = [r[0] for r in rows]
    if len(set(ids)) != len(ids):
        seen: set[int] = set()
        dup = next(r for r in rows if r[0] in seen or seen.add(r[0]))
        raise InputError(f"{path}:{dup[7]}: duplicate node id {dup[0]}")
    known = set(ids)
    for r in rows:
        if r[6] != -1 and r[6] not in known:
            raise InputError(f"{path}:{r[7]}: parent {r[6]} of node {r[0]} is not in the file")
    data = np.array([r[:7] for r in rows], dtype=np.float64)
    return Skeleton(
        ids=data[:, 0].astype(np.int64),
        types=data[:, 1].astype(np.int64),
        xyz=data[:, 2:5].copy(),
        radius=data[:, 5].copy(),
        parents=data[:, 6].astype(np.int64),
    )


def write_swc(path: str | Path, skeleton: Skeleton, *, header: str = "") -> None:
    """Write ``skeleton`` as SWC, with optional ``#`` header lines."""
    out = [f"# {line}" for line in header.splitlines()]
    out.append("# id type x y z radius parent")
    for i, t, (x, y, z), r, p in zip(
        skeleton.ids, skeleton.types, skeleton.xyz, skeleton.radius, skeleton.parents
    ):
        out.append(f"{i} {t} {x:.4f} {y:.4f} {z:.4f} {r:.4f} {p}")
    Path(path).write_text("\n".join(out) + "\n")
