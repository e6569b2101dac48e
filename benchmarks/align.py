"""Frame alignment: landmark error of none / classical 2D and 3D / learned, and frames/s.

A synthetic recording (``volumetric.testing.frames``) moves by known rotation,
translation, a small affine strain, a non-rigid bending of the head
(``--bend``) and, with ``--tilt``, rotations out of the plane; each ``vol
align`` run (a fresh subprocess, the embedded cluster) registers every frame
to the middle one, on the z projection (``--dims 2``, 3x3 matrices) or the
whole frame (``--dims 3``, 4x4 matrices), and its ``transforms.json`` is
scored against the true nuclei positions (``Frames.positions``, the bend
included): mean and 90th-percentile landmark error in pixels in the plane
(y, x), mean error in voxels in 3D (z, y, x; a 2D matrix leaves z as it is)
and PCK@0.05 (share of landmarks within 5 % of the image size in the plane).
"none" is the error before alignment; "affine floor" is the least-squares
affine map (in the plane) of the true reference positions onto each frame's,
about the least error any affine (or rigid) alignment can reach: what remains
is the bend. Frames/s is per whole command, cluster start included (a lower
bound).

With ``--matcher-steps N`` the learned method joins the table: ``vol
train-matcher`` trains an affine matcher (all the lab's warps) and a TPS
matcher (shear, piecewise distortion and noise: the residual after the affine
stage) for N steps each on the recording itself, and ``vol align --method
learned`` runs with the affine matcher alone and with both (affine then TPS);
the training time of each matcher is reported.

    python -m benchmarks.align [--side 256] [--depth 20] [--frames 24] [--affine 0.06]
                               [--bend 0.03] [--tilt 0] [--matcher-steps 0]
                               [--matcher-size 128] [--keep]
"""

import argparse
import json
import os
import sys

import numpy as np

from benchmarks.measure import add_scratch_options, report, run_measured, scratch_dir

RUNS = (("translation", 2), ("rigid", 2), ("affine", 2), ("rigid", 3), ("affine", 3))


def as_3d(matrix: np.ndarray) -> np.ndarray:
    """A 4x4 matrix over ``(z, y, x, 1)``; a 3x3 one over ``(y, x, 1)`` keeps z as it is."""
    if matrix.shape == (4, 4):
        return matrix
    out = np.eye(4)
    out[1:, 1:] = matrix
    return out


def landmark_errors(movie, matrices: list[np.ndarray], reference: int) -> np.ndarray:
    """Per frame and nucleus, the offset ``(z, y, x)`` in voxels of mapped from true positions."""
    at_ref = movie.positions(reference)[:, ::-1]
    return np.stack([at_ref @ as_3d(m)[:3, :3].T + as_3d(m)[:3, 3]
                     - movie.positions(t)[:, ::-1] for t, m in enumerate(matrices)])


def learned_errors(movie, records: list[dict], reference: int,
                   shape: tuple[int, int]) -> np.ndarray:
    """As :func:`landmark_errors` for records of the learned method (``matrix``, ``tps``)."""
    from volumetric.ops.align_learned import map_positions

    at_ref = movie.positions(reference)[:, ::-1]
    out = []
    for r in records:
        moved = map_positions(at_ref[:, 1:], np.array(r["matrix"]), r.get("tps"), shape)
        out.append(np.c_[at_ref[:, :1], moved] - movie.positions(r["t"])[:, ::-1])
    return np.stack(out)


def best_affine(movie, reference: int) -> list[np.ndarray]:
    """Per frame, the least-squares affine map (3x3, y/x) of the true reference positions onto
    the frame's: the floor of any affine alignment's landmark error in the plane."""
    at_ref = movie.positions(reference)[:, [1, 0]]
    design = np.c_[at_ref, np.ones(len(at_ref))]
    out = []
    for t in range(movie.count):
        fit = np.linalg.lstsq(design, movie.positions(t)[:, [1, 0]], rcond=None)[0]
        out.append(np.vstack([fit.T, [0.0, 0.0, 1.0]]))
    return out


def learned_runs(vol: list[str], scratch, args, movie, reference: int, runs: dict,
                 errors: dict) -> dict:
    """Train the two matchers, align with them; their training measurements by kind."""
    frames_zarr = str(scratch / "worm.zarr")
    common = ["--size", str(args.matcher_size), "--steps", str(args.matcher_steps),
              "--batch", "16", "--lr", "1e-3", "--scheduler", "cosine", "--pairs-per-frame", "40"]
    training = {}
    for kind, augment in (("affine", "shear,rotate,distort,zoom,noise"),
                          ("tps", "shear,distort,noise")):
        training[kind] = run_measured([*vol, "train-matcher", frames_zarr, "--model", kind,
                                       "--augment", augment, "--out",
                                       str(scratch / f"m_{kind}"), *common])
    for name, matchers in (("learned affine", ["m_affine"]),
                           ("learned affine+TPS", ["m_affine", "m_tps"])):
        out = scratch / f"{name.replace(' ', '_')}.zarr"
        spec = ",".join(str(scratch / m) for m in matchers)
        runs[name] = run_measured([*vol, "align", frames_zarr, str(out), "--method", "learned",
                                   "--matcher", spec, "--overwrite"])
        records = json.loads((out / "transforms.json").read_text())
        errors[name] = learned_errors(movie, records, reference, (args.side, args.side))
    return training


def main(argv: list[str] | None = None) -> None:
    from volumetric.testing.frames import frames, write_frames

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=256, help="frame width and height")
    parser.add_argument("--depth", type=int, default=20, help="z planes per frame")
    parser.add_argument("--frames", type=int, default=24, help="number of frames")
    parser.add_argument("--affine", type=float, default=0.06, help="affine strain amplitude")
    parser.add_argument("--bend", type=float, default=0.03,
                        help="non-rigid bend amplitude, a fraction of the side (0: none)")
    parser.add_argument("--tilt", type=float, default=0.0,
                        help="amplitude of the rotations about x and y, degrees")
    parser.add_argument("--matcher-steps", type=int, default=0,
                        help="train and score learned matchers for this many steps (0: skip)")
    parser.add_argument("--matcher-size", type=int, default=128, help="matcher input side")
    add_scratch_options(parser)
    args = parser.parse_args(argv)
    movie = frames((2, args.side, args.side, args.depth), args.frames,
                   nuclei=max(120, args.side), seed=7, affine=args.affine, bend=args.bend,
                   tilt=args.tilt)
    reference = args.frames // 2
    pck = 0.05 * args.side
    with scratch_dir("align", args) as scratch:
        h5 = write_frames(scratch / "worm.h5", movie, progress=False)
        vol = [sys.executable, "-m", "volumetric_cli.main", "-q"]
        run_measured([*vol, "convert", str(h5), str(scratch / "worm.zarr"), "--axes", "cxyz"])
        errors = {"none": landmark_errors(movie, [np.eye(3)] * args.frames, reference)}
        runs = {}
        for model, dims in RUNS:
            name, out = f"{model} {dims}D", scratch / f"{model}{dims}.zarr"
            runs[name] = run_measured([*vol, "align", str(scratch / "worm.zarr"), str(out),
                                       "--transform", model, "--dims", str(dims),
                                       "--overwrite"])
            records = json.loads((out / "transforms.json").read_text())
            errors[name] = landmark_errors(movie, [np.array(r["matrix"]) for r in records],
                                           reference)
        errors["affine floor"] = landmark_errors(movie, best_affine(movie, reference), reference)
        training = (learned_runs(vol, scratch, args, movie, reference, runs, errors)
                    if args.matcher_steps else {})
        table = {}
        for name, e in errors.items():
            plane = np.linalg.norm(e[..., 1:], axis=-1)
            table[name] = {
                "mean_px": float(plane.mean()), "p90_px": float(np.percentile(plane, 90)),
                "mean_voxels_3d": float(np.linalg.norm(e, axis=-1).mean()),
                "mean_z_voxels": float(np.abs(e[..., 0]).mean()),
                "pck_0.05": float((plane <= pck).mean()),
                "frames_per_s": args.frames / runs[name].seconds if name in runs else None,
                "peak_rss_mib": runs[name].peak_rss_mib if name in runs else None}
        results = {"frame_shape_cxyz": [2, args.side, args.side, args.depth],
                   "frames": args.frames, "affine": args.affine, "bend": args.bend,
                   "tilt_deg": args.tilt, "reference": reference,
                   "matcher_steps": args.matcher_steps,
                   "matcher_training_s": {k: m.seconds for k, m in training.items()},
                   "cores": os.cpu_count(), "models": table}
        rows = [(name, f"{r['mean_px']:.3f}", f"{r['p90_px']:.3f}",
                 f"{r['mean_voxels_3d']:.3f}", f"{r['mean_z_voxels']:.3f}",
                 f"{r['pck_0.05']:.3f}",
                 "-" if r["frames_per_s"] is None else f"{r['frames_per_s']:.2f}")
                for name, r in table.items()]
        report("align", results, rows, ("model", "mean px (y, x)", "p90 px", "mean vox (z, y, x)",
                                        "mean z vox", "PCK@0.05", "frames/s"))


if __name__ == "__main__":
    main()
