"""``vol info``: describe an OME-Zarr image."""

from __future__ import annotations

import click


@click.command()
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(path: str, as_json: bool) -> None:
    """Describe the OME-Zarr image PATH: axes, shape, chunks, voxel size, pyramid, completeness.

    \b
    Example:
      vol info brain.zarr
      vol info brain.zarr --json | jq .complete
    """
    import json

    from volumetric.ops.info import format_info, image_info

    data = image_info(path)
    click.echo(json.dumps(data) if as_json else format_info(data))
