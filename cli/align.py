"""``vol align``: align the frames of a time series (moving-animal recordings)."""

from __future__ import annotations

import click

from volumetric_cli.options import run_options


@click.command()
@click.argument("frames")
@click.argument("out")
@click.option("--reference", default=None, metavar="N|previous",
              help="Frame every frame is registered to, or 'previous' (each frame to the one "
                   "before, transforms composed). Default: the middle frame.")
@click.option("--channel", type=click.IntRange(min=0), default=0, show_default=True,
              help="Channel registered (all channels are warped).")
@click.option("--transform", type=click.Choice(["translation", "rigid", "affine"]),
              default="rigid", show_default=True, help="Motion model.")
@click.option("--dims", type=click.Choice(["2", "3"]), default="2", show_default=True,
              help="2: register the z projection, one 2D transform for every plane; "
                   "3: register the whole frame (needs a z axis), a 3D transform.")
@click.option("--method", type=click.Choice(["classical", "learned"]), default="classical",
              show_default=True, help="Registration method.")
@click.option("--matcher", metavar="RUN_DIR[,RUN_DIR]",
              help="With --method learned: a `vol train-matcher` run (affine or TPS), or an "
                   "affine run and a TPS run applied in turn.")
@click.option("--movie", metavar="FILE", help="Also write a before / after movie (.mp4 or .gif).")
@run_options()
def align(frames: str, out: str, reference, channel, transform, dims, method, matcher, movie,
          run) -> None:
    """Align every frame of the time series FRAMES; write the OME-Zarr image OUT.

    Each frame is registered on one channel's maximum projection along z
    (phase correlation, then NCC refinement; or, with --method learned, by
    matchers of `vol train-matcher`), and its 2D transform is applied to every
    channel and plane; with --dims 3, on the channel's whole 3D frame
    (rotations rigid in micrometres), its 3D transform warping every channel.
    OUT also holds transforms.json and transforms.csv (per frame: matrix, 3x3
    over (row, col, 1) or 4x4 over (z, y, x, 1), parameters, NCC on --channel).

    \b
    Example:
      vol align worm.zarr aligned.zarr --channel 0 --transform rigid --movie check.mp4
      vol align worm.zarr aligned.zarr --reference previous --transform affine
      vol align worm.zarr aligned.zarr --method learned --matcher m_affine,m_tps
      vol align worm.zarr aligned.zarr --dims 3 --transform rigid
    """
    from statistics import fmean

    from volumetric.ops.align import align as run_align

    report = run_align(frames, out, reference=reference, channel=channel, transform=transform,
                       method=method, matcher=matcher, movie=movie, dims=int(dims), run=run)
    scores = [r["score"] for r in report.records]
    before = [r["score_before"] for r in report.records]
    target = ("each to the previous one, composed from frame 0" if report.reference == "previous"
              else f"to frame {report.reference}")
    click.echo(
        f"wrote {out}: {'x'.join(map(str, report.image.shape))} {report.image.array(0).dtype}, "
        f"{len(scores)} frames aligned {target} "
        f"({transform if method == 'classical' else 'learned: ' + matcher}"
        f"{', 3D' if dims == '3' else ''}), "
        f"mean NCC {fmean(before):.3f} -> {fmean(scores):.3f} (min {min(scores):.3f}), "
        f"{report.seconds:.1f} s; transforms.json, transforms.csv"
        + (f"; movie {movie}" if movie else "")
    )
