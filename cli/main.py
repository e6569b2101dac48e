"""``vol``: the volumetric command line.

A thin click group: each subcommand lives in its own module, imports the
heavy libraries inside its function and calls one library function. Errors
caused by the input print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import gc
import importlib
import logging
import sys
from typing import Any

import click

from volumetric import __version__
from volumetric.errors import VolumetricError

# name -> "module:attribute"; modules are imported only when the command is used.
COMMANDS = {
    "align": "volumetric_cli.align:align",
    "cluster": "volumetric_cli.cluster:cluster",
    "convert": "volumetric_cli.convert:convert",
    "discover": "volumetric_cli.discover:discover",
    "distance": "volumetric_cli.distance:distance",
    "evaluate": "volumetric_cli.evaluate:evaluate",
    "export": "volumetric_cli.export:export",
    "info": "volumetric_cli.info:info",
    "label": "volumetric_cli.label:label",
    "overlay": "volumetric_cli.overlay:overlay",
    "patches": "volumetric_cli.patches:patches",
    "predict": "volumetric_cli.predict:predict",
    "project": "volumetric_cli.project:project",
    "render": "volumetric_cli.render:render",
    "synth": "volumetric_cli.synth:synth",
    "train": "volumetric_cli.train:train",
    "train-matcher": "volumetric_cli.train_matcher:train_matcher",
}


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


class VolGroup(click.Group):
    """A lazily loading group that turns input errors into one line and exit status 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def main(self, args: Any = None, prog_name: str | None = None, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(args, prog_name or "vol", **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:  # bare `vol`: the help, as is
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("vol: aborted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            click.echo(f"vol: error: {_one_line(exc.format_message())}", err=True)
            sys.exit(2)
        except VolumetricError as exc:
            click.echo(f"vol: error: {_one_line(str(exc))}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("vol: interrupted; rerun the same command to resume", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=VolGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="vol")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors: no progress, links or warnings.")
def vol(verbose: int, quiet: bool) -> None:
    """Out-of-core microscopy volumes: OME-Zarr conversion and block-wise processing.

    Every heavy command runs as block tasks on dask.distributed: an embedded
    LocalCluster by default, or an existing scheduler with --cluster ADDRESS.
    Run `vol COMMAND -h` for the options and an example of each command.
    """
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("vol: %(levelname)s: %(message)s"))
    logger = logging.getLogger("volumetric")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    from volumetric.engine import silence

    silence(quiet)


def main() -> None:
    """The ``vol`` console script: :func:`vol`, then an exit without the last collections.

    Python's garbage collections at exit walk every object the imported
    libraries made (the dashboard's alone take about 0.2 s); freezing them
    first skips that work, as the process ends here anyway.
    """
    try:
        vol()
    finally:
        gc.freeze()


if __name__ == "__main__":
    main()
