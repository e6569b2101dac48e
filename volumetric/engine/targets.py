"""What ``--cluster`` names: the embedded cluster, a running scheduler, or a profile.

``--cluster`` (default ``$VOLUMETRIC_CLUSTER``, else ``local``) takes

- ``local``: an embedded LocalCluster sized to this machine;
- ``local:N``: an embedded LocalCluster of N worker processes;
- a scheduler address, ``tcp://host:8786`` or ``host:8786``;
- a scheduler file, the JSON that ``dask scheduler --scheduler-file`` (or
  ``vol cluster up``) writes;
- a profile NAME: ``volumetric.profiles.NAME`` in dask's configuration, e.g.
  in ``~/.config/dask/volumetric.yaml``, describing a SLURM, PBS or LSF
  cluster (dask-jobqueue) or a GPU machine (dask-cuda); see
  :mod:`volumetric.engine.profiles`.

:func:`resolve_target` turns the string into a :class:`Target`, checked
(a scheduler file is read, a profile validated) but not connected.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from volumetric.engine.scheduler import CLUSTER_ENV, read_address
from volumetric.errors import ClusterError

if TYPE_CHECKING:
    from volumetric.engine.profiles import Profile

LOCAL = "local"
_PROFILE_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Target:
    """A cluster to connect to, as :func:`resolve_target` understood ``--cluster``.

    Attributes
    ----------
    kind : str
        ``"local"`` (an embedded LocalCluster), ``"scheduler"`` (a running
        dask scheduler) or ``"profile"`` (a cluster a profile describes).
    named : str
        How the cluster was named, for messages: ``--cluster X`` or
        ``$VOLUMETRIC_CLUSTER=X``.
    address : str, optional
        The scheduler's address (kind ``"scheduler"``).
    workers : int, optional
        Worker processes asked for with ``local:N`` (kind ``"local"``).
    profile : Profile, optional
        The validated profile (kind ``"profile"``).
    """

    kind: str
    named: str
    address: str | None = None
    workers: int | None = None
    profile: Profile | None = None

    @property
    def embedded(self) -> bool:
        """Whether the cluster is a LocalCluster started inside this process (``local[:N]``)."""
        return self.kind == LOCAL


def resolve_target(cluster: str | None = None) -> Target:
    """The cluster that ``cluster`` names; checked, not connected.

    Parameters
    ----------
    cluster : str, optional
        ``local``, ``local:N``, a scheduler address, a scheduler file or a
        profile name. Default: ``$VOLUMETRIC_CLUSTER``, else ``local``.

    Returns
    -------
    Target

    Raises
    ------
    ClusterError
        A bad ``local:N``, a missing or unreadable scheduler file, an address
        without a port, an unknown profile, or a profile that cannot be used
        here (bad settings, its extra not installed).

    Examples
    --------
    >>> resolve_target("local:2").workers
    2
    >>> resolve_target("tcp://10.0.0.1:8786").address
    'tcp://10.0.0.1:8786'
    """
    given = cluster or os.environ.get(CLUSTER_ENV) or LOCAL
    named = f"--cluster {given}" if cluster else f"${CLUSTER_ENV}={given}"
    if given == LOCAL:
        return Target(LOCAL, named)
    if given.startswith(f"{LOCAL}:"):
        count = given[len(LOCAL) + 1:]
        if not count.isdigit() or int(count) < 1:
            raise ClusterError(f"{named}: give local:N with N >= 1 worker processes")
        return Target(LOCAL, named, workers=int(count))
    if _PROFILE_NAME.fullmatch(given) and not os.path.exists(given):
        from volumetric.engine.profiles import load_profile

        return Target("profile", named, profile=load_profile(given, named))
    return Target("scheduler", named, address=read_address(given, named))
