"""Shared click options and value parsers for ``vol`` commands."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click


def _numbers(kind: type, name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def parse(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            numbers = tuple(kind(v) for v in str(value).split(","))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a comma-separated list of {name}") from None
        if any(v <= 0 for v in numbers):
            raise click.BadParameter(f"{value!r}: values must be positive")
        return numbers

    return parse


int_tuple = _numbers(int, "integers")
float_tuple = _numbers(float, "numbers")


def levels_option(
    reduction: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--levels N`` (at least 1, default 1): pyramid levels of the output image.

    Parameters
    ----------
    reduction : str, optional
        How a level is made from the one below, for the help (e.g. ``"mean"``).
    """
    how = f"; each level is the {reduction} of the one below" if reduction else ""
    return click.option("--levels", type=click.IntRange(min=1), default=1, show_default=True,
                        help=f"Pyramid levels including full resolution{how}.")


def cluster_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--cluster`` and ``--workers``, shared by every command that runs block tasks."""
    func = click.option(
        "--workers", type=click.IntRange(min=1), default=None,
        help="Worker processes of the embedded LocalCluster (default: one per core).",
    )(func)
    return click.option(
        "--cluster", metavar="local:N|ADDRESS|FILE|PROFILE", default=None,
        help="Where the block tasks run: local (default: an embedded LocalCluster sized to "
             "this machine), local:N (N worker processes), a dask scheduler address "
             "(tcp://host:8786, e.g. from `vol cluster up`), a scheduler file, or a profile "
             "in dask's config (volumetric.profiles.NAME: SLURM, PBS, LSF, GPU). "
             "Default: $VOLUMETRIC_CLUSTER, else local.",
    )(func)


def run_options(
    *, overwrite: bool = True, block_mb: str | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--overwrite``, ``--block-mb``, ``--cluster`` and ``--workers``, passed on as one ``run``.

    The command function receives ``run``, a :class:`volumetric.RunOptions`,
    instead of the separate options.

    Parameters
    ----------
    overwrite : bool
        Offer ``--overwrite`` (commands that write an output).
    block_mb : str, optional
        Help text of ``--block-mb`` (with the command's default); None: no such option.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            from volumetric import RunOptions

            mb = kwargs.pop("block_mb", None)
            kwargs["run"] = RunOptions(
                overwrite=kwargs.pop("overwrite", False),
                block_bytes=int(mb * 2**20) if mb else None,
                cluster=kwargs.pop("cluster"), workers=kwargs.pop("workers"),
            )
            return func(*args, **kwargs)

        command = cluster_options(command)
        if block_mb is not None:
            command = click.option("--block-mb", type=click.FloatRange(min=0, min_open=True),
                                   default=None, help=block_mb)(command)
        if overwrite:
            command = click.option("--overwrite", is_flag=True,
                                   help="Replace an existing output.")(command)
        return command

    return decorate


def sampler_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--sampler``, ``--foreground-probability`` and ``--foreground``, shared by the
    commands that draw patches (``patches``, ``train``)."""
    func = click.option(
        "--foreground", default=">0", show_default=True,
        help="Which target voxels are foreground, e.g. '>0' or '<5' for a distance map.",
    )(func)
    func = click.option(
        "--foreground-probability", type=click.FloatRange(0, 1), default=0.5, show_default=True,
        help="Share of foreground-centred patches (foreground sampler).",
    )(func)
    return click.option(
        "--sampler", type=click.Choice(["random", "grid", "foreground"]), default="random",
        show_default=True,
    )(func)


def _names(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    return tuple(name.strip() for name in (value or "").split(",") if name.strip())


def _range(ctx: click.Context, param: click.Parameter,
           value: str | None) -> tuple[float, float] | None:
    """``MIN,MAX`` of positive numbers with MIN <= MAX."""
    pair = float_tuple(ctx, param, value)
    if pair is not None and (len(pair) != 2 or pair[0] > pair[1]):
        raise click.BadParameter(f"{value!r}: give MIN,MAX with MIN <= MAX")
    return pair


def _alpha_sigma(ctx: click.Context, param: click.Parameter,
                 value: str | None) -> tuple[float, float] | None:
    pair = float_tuple(ctx, param, value)
    if pair is not None and len(pair) != 2:
        raise click.BadParameter(f"{value!r}: give ALPHA,SIGMA")
    return pair


def augment_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--augment/--no-augment``, ``--no-aug NAMES`` and the strengths ``--rotate``,
    ``--elastic``, ``--scale``, ``--gamma`` and ``--blur``, shared by the commands that draw
    patches (``patches``, ``train``).

    The command function receives ``augment``, ``augment_off`` and ``augmentation``, a
    :class:`volumetric.kernels.augment.AugmentConfig` with the strengths given (its
    defaults otherwise).
    """

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        from volumetric.kernels.augment import AugmentConfig, elastic_from_alpha_sigma

        knobs = {"rotate_degrees": kwargs.pop("rotate"), "zoom": kwargs.pop("scale"),
                 "gamma": kwargs.pop("gamma"), "blur_sigma": kwargs.pop("blur")}
        elastic = kwargs.pop("elastic")
        if elastic is not None:
            knobs["elastic_magnitude"], knobs["elastic_spacing"] = elastic_from_alpha_sigma(
                *elastic)
        kwargs["augmentation"] = AugmentConfig(**{k: v for k, v in knobs.items()
                                                  if v is not None})
        return func(*args, **kwargs)

    for option in reversed([
        click.option("--augment/--no-augment", default=True, show_default=True,
                     help="Augment the patches (flips, rotations, elastic warps, intensity and "
                          "noise; see --no-aug)."),
        click.option(
            "--no-aug", "augment_off", metavar="NAMES", callback=_names,
            help="Switch single augmentations off, comma-separated. Defaults: flip (each axis, "
                 "p 0.5), rotate90 (quarter turns in y-x), rotate (+-15 degrees per plane), "
                 "shear (+-0.05), elastic (displacements of sd 2 voxels, control points every "
                 "16), scale (off); these four warp a patch together with p 0.5; intensity "
                 "(scale 1+-0.1, shift +-0.1) and noise (sd 0.05), applied together with p 0.5; "
                 "gamma (off; p 0.5) and blur (off; p 0.5), each drawn on its own."),
        click.option("--rotate", type=click.FloatRange(0, 180), metavar="DEGREES",
                     help="Rotations uniform in +-DEGREES per plane (default 15)."),
        click.option("--elastic", callback=_alpha_sigma, metavar="ALPHA,SIGMA",
                     help="Elastic strength as Simard et al.'s alpha and sigma (e.g. 34,4): "
                          "displacements of sd ALPHA/(2 sqrt(3 pi) SIGMA) voxels, control "
                          "points every 2 SIGMA voxels (default: sd 2, every 16)."),
        click.option("--scale", callback=_range, metavar="MIN,MAX",
                     help="Zoom factors log-uniform in [MIN, MAX], with the warp (default off)."),
        click.option("--gamma", callback=_range, metavar="MIN,MAX",
                     help="Gamma log-uniform in [MIN, MAX] on the image, p 0.5 (default off)."),
        click.option("--blur", type=click.FloatRange(min=0), metavar="SIGMA_MAX",
                     help="Gaussian blur of the image, sd uniform in [0, SIGMA_MAX] voxels, "
                          "p 0.5 (default off)."),
    ]):
        command = option(command)
    return command
