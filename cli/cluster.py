"""``vol cluster up|info|down``: a standing dask cluster on this machine, and what a cluster is."""

from __future__ import annotations

import click


def _memory_limit(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from dask.utils import parse_bytes

    if value == "auto":
        return value
    try:
        if parse_bytes(value) > 0:
            return value
    except ValueError:
        pass
    raise click.BadParameter(f"{value!r} is not 'auto' or an amount of memory such as 4GiB")


@click.group()
def cluster() -> None:
    """Start, describe and stop a standing dask cluster, so that commands skip the start-up.

    \b
    Example:
      vol cluster up --workers 4
      export VOLUMETRIC_CLUSTER=tcp://127.0.0.1:40123    # as `up` prints
      vol distance mask.zarr dist.zarr --clip 10          # runs on it
      vol cluster info
      vol cluster down
    """


@cluster.command()
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: one per core, at most what the machine holds).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads per worker process (default 1; with --gpus, the cores shared out).")
@click.option("--memory-limit", default="auto", show_default=True, callback=_memory_limit,
              help="Memory of each worker, e.g. 4GiB ('auto': the machine's, shared out).")
@click.option("--gpus", type=click.IntRange(min=0), default=0, show_default=True,
              help="GPUs to drive: a worker per GPU, pinned to it, offering the resource GPU=1.")
@click.option("--dashboard-address", default="127.0.0.1:8787", show_default=True,
              help="Where the dashboard listens (a port alone, ':8787': on 127.0.0.1 only).")
def up(workers, threads, memory_limit, gpus, dashboard_address) -> None:
    """Start a dask scheduler and workers on this machine that outlive the command.

    They listen on 127.0.0.1; their state and logs are kept in $VOLUMETRIC_STATE
    (default ~/.cache/volumetric). Point commands at the printed address with
    --cluster or $VOLUMETRIC_CLUSTER; `vol cluster down` stops them.
    """
    from volumetric.engine.standing import cluster_up

    state = cluster_up(workers, threads=threads, memory_limit=memory_limit, gpus=gpus,
                       dashboard_address=dashboard_address)
    from volumetric.engine.census import plural

    gpu = f", {plural(state['gpus'], 'GPU')}" if state["gpus"] else ""
    click.echo(f"dask scheduler at {state['address']}: {plural(state['workers'], 'worker')} of "
               f"{plural(state['threads'], 'thread')}{gpu} (logs in {state['folder']})")
    click.echo(f"dashboard: {state['dashboard']}")
    click.echo(f"export VOLUMETRIC_CLUSTER={state['address']}")


@cluster.command()
@click.argument("address", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(address: str | None, as_json: bool) -> None:
    """Describe the cluster at ADDRESS (an address or a scheduler file): workers, threads,
    memory, GPUs and package versions here, on the scheduler and on the workers.

    Default: the cluster `vol cluster up` started, else $VOLUMETRIC_CLUSTER.
    """
    import json

    from volumetric.engine.census import cluster_info, format_cluster_info
    from volumetric.engine.standing import described_address

    data = cluster_info(described_address(address))
    click.echo(json.dumps(data) if as_json else format_cluster_info(data))


@cluster.command()
def down() -> None:
    """Stop the scheduler and workers that `vol cluster up` started."""
    from volumetric.engine.standing import cluster_down

    state = cluster_down()
    click.echo(f"stopped the dask cluster at {state['address']} ({state['workers']} workers)")
