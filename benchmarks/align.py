"""Frame alignment: landmark error of none / translation / rigid / affine, and frames/s.

A synthetic recording (``volumetric.testing.frames``) moves by known rotation,
translation, a small affine strain and a non-rigid bending of the head
(``--bend``); each ``vol align`` run (a fresh subprocess, the embedded
cluster) registers every frame to the middle one, and its
``transforms.json`` is scored against the true nuclei positions
(``Frames.positions``, the bend included): mean and 90th-percentile
landmark error in pixels and PCK@0.05 (share of landmarks within 5 % of the
image size). "none" is the error before alignment; "affine floor" is the
least-squares affine map of the true reference positions onto each frame's,
about the least error any affine (or rigid) alignment can reach: what
remains is the bend. Frames/s is per whole command, cluster start included (a lower
bound).

With ``--matcher-steps N`` the learned method joins the table: ``vol
train-matcher`` trains an affine matcher (all the lab's warps) and a TPS
matcher (shear, piecewise distortion and noise: the residual after the affine
stage) for N steps each on the recording itself, and ``vol align --method
learned`` runs with the affine matcher alone and with both (affine then TPS);
the training time of each matcher is reported.

    python -m benchmarks.align [--side 256] [--frames 24] [--affine 0.06] [--bend 0.03]
                               [--matcher-steps 0] [--matcher-size 128] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from benchmarks.measure import add_scratch_options, report, run_measured, scratch_dir

MODELS = ("translation", "rigid", "affine")


def landmark_errors(movie, matrices: list[np.ndarray], reference: int) -> np.ndarray:
    """Per frame and nucleus, the distance (pixels, y/x) between mapped and true positions."""
    at_ref = movie.positions(reference)[:, [1, 0]]
    return np.stack([np.linalg.norm(at_ref @ m[:2, :2].T + m[:2, 2]
                                    - movie.positions(t)[:, [1, 0]], axis=1)
                     for t, m in enumerate(matrices)])


def learned_errors(movie, records: list[dict], reference: int,
                   shape: tuple[int, int]) -> np.ndarray:
    """As :func:`landmark_errors` for records of the learned method (affine ``matrix``, ``tps``)."""
    from volumetric.ops.align_learned import map_positions

    at_ref = movie.positions(reference)[:, [1, 0]]
    return np.stack([np.linalg.norm(map_positions(at_ref, np.array(r["matrix"]), r.get("tps"),
                                                  shape) - movie.positions(r["t"])[:, [1, 0]],
                                    axis=1)
                     for r in records])


def best_affine(movie, reference: int) -> list[np.ndarray]:
    """Per frame, the least-squares affine map (3x3, y/x) of the true reference positions onto
    the frame's: the floor of any affine alignment's landmark error."""
    at_ref = movie.positions(reference)[:, [1, 0]]
    design = np.c_[at_ref, np.ones(len(at_ref))]
    out = []
    for t in range(movie.count):
        fit = np.linalg.lstsq(design, movie.positions(t)[:, [1, 0]], rcond=None)[0]
        out.append(np.vstack([fit.T, [0.0, 0.0, 1.0]]))
    return out


def main(argv: list[str] | None = None) -> None:
    from volumetric.testing.frames import frames, write_frames

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=256, help="frame width and height")
    parser.add_argument("--depth", type=int, default=20, help="z planes per frame")
    parser.add_argument("--frames", type=int, default=24, help="number of frames")
    parser.add_argument("--affine", type=float, default=0.06, help="affine strain amplitude")
    parser.add_argument("--bend", type=float, default=0.03,
                        help="non-rigid bend amplitude, a fraction of the side (0: none)")
    parser.add_argument("--matcher-steps", type=int, default=0,
                        help="train and score learned matchers for this many steps (0: skip)")
    parser.add_argument("--matcher-size", type=int, default=128, help="matcher input side")
    add_scratch_options(parser)
    args = parser.parse_args(argv)
    movie = frames((2, args.side, args.side, args.depth), args.frames,
                   nuclei=max(120, args.side), seed=7, affine=args.affine, bend=args.bend)
    reference = args.frames // 2
    pck = 0.05 * args.side
    with scratch_dir("align", args) as scratch:
        h5 = write_frames(scratch / "worm.h5", movie, progress=False)
        vol = [sys.executable, "-m", "volumetric_cli.main", "-q"]
        run_measured([*vol, "convert", str(h5), str(scratch / "worm.zarr"), "--axes", "cxyz"])
        errors = {"none": landmark_errors(movie, [np.eye(3)] * args.frames, reference)}
        runs = {}
        for model in MODELS:
            out = scratch / f"{model}.zarr"
            runs[model] = run_measured([*vol, "align", str(scratch / "worm.zarr"), str(out),
                                        "--transform", model, "--overwrite"])
            records = json.loads((out / "transforms.json").read_text())
            errors[model] = landmark_errors(movie, [np.array(r["matrix"]) for r in records],
                                            reference)
        errors["affine floor"] = landmark_errors(movie, best_affine(movie, reference), reference)
        training = {}
        if args.matcher_steps:
            common = ["--size", str(args.matcher_size), "--steps", str(args.matcher_steps),
                      "--batch", "16", "--lr", "1e-3", "--pairs-per-frame", "40"]
            for kind, augment in (("affine", "shear,rotate,distort,zoom,noise"),
                                  ("tps", "shear,distort,noise")):
                training[kind] = run_measured([*vol, "train-matcher", str(scratch / "worm.zarr"),
                                               "--model", kind, "--augment", augment, "--out",
                                               str(scratch / f"m_{kind}"), *common])
            for name, matcher in (("learned affine", "m_affine"),
                                  ("learned affine+TPS", "m_affine,m_tps")):
                out = scratch / f"{name.replace(' ', '_')}.zarr"
                spec = ",".join(str(scratch / m) for m in matcher.split(","))
                runs[name] = run_measured([*vol, "align", str(scratch / "worm.zarr"), str(out),
                                           "--method", "learned", "--matcher", spec,
                                           "--overwrite"])
                records = json.loads((out / "transforms.json").read_text())
                errors[name] = learned_errors(movie, records, reference, (args.side, args.side))
        table = {
            name: {"mean_px": float(e.mean()), "p90_px": float(np.percentile(e, 90)),
                   "pck_0.05": float((e <= pck).mean()),
                   "frames_per_s": args.frames / runs[name].seconds if name in runs else None,
                   "peak_rss_mib": runs[name].peak_rss_mib if name in runs else None}
            for name, e in errors.items()
        }
        results = {"frame_shape_cxyz": [2, args.side, args.side, args.depth],
                   "frames": args.frames, "affine": args.affine, "bend": args.bend,
                   "reference": reference, "matcher_steps": args.matcher_steps,
                   "matcher_training_s": {k: r.seconds for k, r in training.items()},
                   "cores": os.cpu_count(), "models": table}
        rows = [(name, f"{r['mean_px']:.3f}", f"{r['p90_px']:.3f}", f"{r['pck_0.05']:.3f}",
                 "-" if r["frames_per_s"] is None else f"{r['frames_per_s']:.2f}")
                for name, r in table.items()]
        report("align", results, rows, ("model", "mean px", "p90 px", "PCK@0.05", "frames/s"))


if __name__ == "__main__":
    main()
