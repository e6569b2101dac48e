"""``vol predict``: seamless sliding-window inference into an OME-Zarr image."""

from __future__ import annotations

from typing import Any

import click
from volumetric_cli.options import int_tuple, levels_option, run_options


def _overlap(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    try:
        values = tuple(float(v) for v in str(value).split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number or a comma-separated list") from None
    if any(not 0 <= v < 1 for v in values):
        raise click.BadParameter(f"{value!r}: overlap fractions lie in [0, 1)")
    return values


def _channels(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in str(value).split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of channel indices") from None


@click.command()
@click.argument("raw")
@click.argument("out")
@click.option("--model", required=True, metavar="M",
              help="TorchScript file, checkpoint of a built-in network from `vol train`, "
                   "or module:factory (with --weights for a checkpoint of your own network).")
@click.option("--weights", metavar="W", help="State dict or checkpoint for a module:factory model.")
@click.option("--window", metavar="Z,Y,X", callback=int_tuple,
              help="Window shape; a size-1 axis feeds a 2D model (default: the model's training "
                   "patch, else 64).")
@click.option("--overlap", default="0.5", show_default=True, callback=_overlap,
              help="Overlap fraction in [0, 1), one value or one per axis. Warns when the "
                   "windows exceed 27x those without overlap; refused over 4096x or when the "
                   "window step would be under one voxel.")
@click.option("--blend", type=click.Choice(["gaussian", "hann", "constant"]), default="gaussian",
              show_default=True, help="Window weights (gaussian sigma = window/8, as MONAI).")
@click.option("--normalize", type=click.Choice(["none", "percentile", "zscore"]), default=None,
              help="Input normalisation with volume-wide statistics (default: the checkpoint's, "
                   "else none).")
@click.option("--channels", metavar="I,J", callback=_channels,
              help="Input channels fed to the model, in order (default: all).")
@click.option("--cubes", metavar="FILE", help="Cube list from `vol discover`: only windows "
              "touching listed cubes run, and only the cubes are written.")
@click.option("--mask", metavar="MASK", help="Mask volume: only windows touching its nonzero "
              "chunks run.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Windows per model call.")
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu, cuda or cuda:N; auto is cuda where the workers have it.")
@click.option("--amp", type=click.Choice(["bf16", "fp16"]), default=None,
              help="Mixed precision for the model (sums stay fp32).")
@click.option("--dtype", type=click.Choice(["float32", "float16", "uint8", "uint16"]),
              default=None,
              help="Stored type (default float32). A model trained on an image target "
                   "(`vol train --target image`) writes the target's units with the scaling "
                   "stored in it, integer types rounded and clipped to their range; otherwise "
                   "uint8 scales probabilities 0..1 to 0..255 and uint16 rounds and clips.")
@click.option("--threshold", type=float, default=None,
              help="Binary uint8 output: value > T (T finite).")
@click.option("--clip", type=float, default=None,
              help="Clip predictions to [0, D] (distance maps; D positive and finite).")
@click.option("--fill", type=float, default=None,
              help="Value outside --cubes/--mask and where no window ran; default: --clip, else 0.")
@click.option("--pad/--no-pad", default=True, show_default=True,
              help="Pad axes shorter than the window (as MONAI), or refuse them.")
@click.option("--chunks", metavar="Z,Y,X", callback=int_tuple,
              help="Output chunk shape (default 64^3, 1 MB of float32).")
@click.option("--block", metavar="Z,Y,X", callback=int_tuple,
              help="Block shape, a multiple of the chunks (default: about two windows).")
@levels_option("mean (nearest downsampling with --threshold, so it stays 0/1)")
@run_options()
def predict(raw: str, out: str, model, weights, window, overlap, blend, normalize, channels,
            cubes, mask, batch, device, amp, dtype, threshold, clip, fill, pad, chunks, block,
            levels, run) -> None:
    """Predict RAW with a model into the OME-Zarr image OUT (OUT/0: [t,] c, z, y, x).

    A time series is predicted time point by time point.

    Windows lie on one global grid placed as MONAI's sliding_window_inference
    places them, each is evaluated once, and the blended result equals a
    single pass over the whole volume. An interrupted run resumes when the
    same command is run again. A model trained on a normalised image target
    stores the target's statistics: its predictions are written back in the
    target's units (e.g. --dtype uint16 for a uint16 fluorescence target).

    \b
    Example:
      vol predict brain.zarr pred.zarr --model unet.pt --window 64,64,64 --overlap 0.5
      vol predict brain.zarr pred.zarr --model ckpt.pt --cubes cubes.json --device cuda --amp bf16
      vol predict brightfield.zarr fluo.zarr --model run/model.ts --dtype uint16
    """
    from volumetric import PredictOptions
    from volumetric import predict as run_predict

    options = PredictOptions(
        model, weights=weights, window=window, overlap=overlap, blend=blend, normalize=normalize,
        channels=channels, cubes=cubes, mask=mask, batch=batch, device=device, dtype=dtype,
        threshold=threshold, clip=clip, fill=fill, amp=amp, pad=pad, chunks=chunks, block=block,
        levels=levels,
    )
    report = run_predict(raw, out, options, run=run)
    shape = "x".join(map(str, report.image.shape))
    click.echo(
        f"wrote {out}: {report.image.meta.axes} {shape} {report.image.array(0).dtype}, "
        f"{report.evaluations} window evaluations for {report.windows} windows, "
        f"{report.output_blocks} blocks in {report.seconds:.1f} s on {report.device}"
    )
