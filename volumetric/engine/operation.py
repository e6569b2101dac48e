"""The skeleton every block operation runs in: claim the output, run block jobs, complete.

::

    check the cluster ─> claim the output ─> session ─> job, job, ... ─> complete the output
      (it answers)      (refuse, resume or    (client)   (run_blocks with    (metadata final,
                         create; the lease)              the journal)        journal and lease gone)

An operation validates its options, plans its boxes and describes its
output (an :class:`Output`) without a cluster; :func:`block_operation` then
owns every step above, once for all operations. The operation's body only
submits its jobs through :meth:`Operation.run`. Should the body raise, the
output stays incomplete (a rerun resumes it) and its lease is given up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from volumetric.engine.cluster import check_cluster, prepare_embedded_workers, session
from volumetric.engine.journal import Journal
from volumetric.engine.lease import release_lease
from volumetric.engine.run import run_blocks
from volumetric.geometry import Box

if TYPE_CHECKING:
    from distributed import Client

R = TypeVar("R")
log = logging.getLogger("volumetric")


@dataclass(frozen=True)
class RunOptions:
    """Where and how an operation runs: the options every block operation shares.

    Parameters
    ----------
    overwrite : bool
        Replace an existing output.
    block_bytes : int, optional
        Target size of a block (each operation has its default).
    client : distributed.Client, optional
        Run on this client (e.g. from :func:`volumetric.cluster`) instead of connecting.
    cluster : str, optional
        ``"local"``, ``"local:N"``, a scheduler address, a scheduler file or a
        profile name (see :func:`~volumetric.engine.targets.resolve_target`).
    workers : int, optional
        Worker processes of the embedded cluster.
    progress : bool
        Print the dashboard link and progress lines.
    """

    overwrite: bool = False
    block_bytes: int | None = None
    client: Client | None = None
    cluster: str | None = None
    workers: int | None = None
    progress: bool = True


class Output(Protocol):
    """What an operation writes: claimed before the first block, completed after the last."""

    path: str

    def claim(self, overwrite: bool) -> tuple[Journal, bool]:
        """Refuse, resume or create the output; returns its journal and whether it resumed."""

    def complete(self, journal: Journal) -> None:
        """Mark the output complete once every block is durable."""


@dataclass
class Operation:
    """One running operation, as :func:`block_operation` hands it to the operation's body.

    Attributes
    ----------
    client : distributed.Client
        The cluster's client.
    journal : Journal or None
        The output's journal (None for an operation without an output).
    resumed : bool
        Whether an interrupted run of the same layout continues.
    progress : bool
        Whether progress lines are shown.
    """

    client: Client
    journal: Journal | None
    resumed: bool
    progress: bool

    def scratch(self, name: str) -> Path:
        """A folder for intermediate files inside the output's journal, gone once it is complete."""
        if self.journal is None:
            raise ValueError("an operation without an output has no scratch folder")
        return self.journal.scratch(name)

    def run(
        self,
        task: Callable[..., R],
        boxes: Sequence[Box],
        *,
        job: str,
        label: str | None = None,
        resources: dict[str, float] | None = None,
        prepare: Callable[[Box], Any] | None = None,
        journaled: bool = True,
    ) -> dict[Box, R]:
        """Run one block job (see :func:`~volumetric.engine.run_blocks`), journaled by default.

        ``journaled=False`` runs a job whose results are needed again on a
        rerun (e.g. a survey feeding the plan), so none of its blocks is
        skipped as done.
        """
        return run_blocks(task, boxes, client=self.client,
                          journal=self.journal if journaled else None, job=job, label=label,
                          progress=self.progress, resources=resources, prepare=prepare)


@contextmanager
def block_operation(
    output: Output | None, options: RunOptions, *, gpus: int = 0, small: bool = False
) -> Iterator[Operation]:
    """Claim ``output``, connect, yield the running :class:`Operation`, then complete the output.

    Parameters
    ----------
    output : Output or None
        What the operation writes (None: it only computes, e.g. an evaluation).
    options : RunOptions
        Where and how to run.
    gpus : int
        GPUs for the embedded cluster (see :func:`~volumetric.engine.local_cluster`).
    small : bool
        The job is small and its inputs may be read from threads: an embedded
        cluster runs its workers as threads of this process, which start at
        once (see :func:`~volumetric.engine.connect`).

    Yields
    ------
    Operation

    Raises
    ------
    ClusterError
        The cluster named cannot be reached; raised before the output is claimed.
    DestinationError
        The output may not be written (see the output's ``claim``).
    """
    check_cluster(options.client, options.cluster)
    prepare_embedded_workers(options.client, options.cluster, gpus=gpus, in_process=small)
    journal, resumed = output.claim(options.overwrite) if output is not None else (None, False)
    if resumed:
        log.info("resuming the interrupted run that writes %s", output.path)
    try:
        with session(options.client, options.cluster, options.workers,
                     quiet=not options.progress, gpus=gpus, checked=True,
                     in_process=small) as client:
            yield Operation(client, journal, resumed, options.progress)
        if output is not None and journal is not None:
            output.complete(journal)
    finally:
        if journal is not None:
            release_lease(journal.root)
