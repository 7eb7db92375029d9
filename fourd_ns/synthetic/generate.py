"""`generate_scene`: render a preset with the stereo rig and write it in the Nerfies layout with ground truth."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from fourd_ns.synthetic import writer
from fourd_ns.synthetic.points import sparse_points
from fourd_ns.synthetic.presets import PRESETS
from fourd_ns.synthetic.render import area_downsample, ground_truth, render_rgb
from fourd_ns.synthetic.rig import stereo_rig

GENERATOR_VERSION = "1"
"""Bumped whenever the same (preset, seed, size) would produce different files."""
POINT_FRAMES = 4
"""SfM-like points are sampled from the left views of the first this many frames."""
POINT_COUNT = 4000
POINT_NOISE = 0.005
"""Standard deviation of the point noise as a fraction of the scene size (1 / scene scale)."""
POINT_OUTLIERS = 0.03


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (process-global, restored on exit); None leaves it."""
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _prepare_output(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out_dir} exists and is not empty; choose another folder or overwrite (CLI: --overwrite True)"
            )
        # Only remove what this generator writes, so a mistyped folder loses nothing else.
        for name in writer.OUTPUT_DIRS:
            shutil.rmtree(out_dir / name, ignore_errors=True)
        for name in writer.OUTPUT_FILES:
            (out_dir / name).unlink(missing_ok=True)
    writer.make_dirs(out_dir)


def generate_scene(
    preset: str,
    out_dir: str | Path,
    seed: int = 0,
    num_frames: int = 48,
    width: int = 320,
    height: int = 180,
    supersample: int = 2,
    overwrite: bool = False,
    on_frame: Callable[[int, int], None] | None = None,
    num_threads: int | None = 1,
) -> Path:
    """Render `preset` for `num_frames` time steps with the left/right rig and write it to `out_dir`.

    width x height is the 1x resolution (both even, so 2x is exact); `supersample` s renders s x s
    RGB samples per 1x pixel. `on_frame(done, total)` is called after each time step (progress
    bars). Output is a deterministic function of the arguments. Returns the output folder.

    `num_threads` is torch's intra-op thread count while rendering (None = leave as is). The
    renderer issues many small tensor ops, and on shared CPUs intra-op threads cost far more than
    they give: the default bell preset took 68 s with 1 thread and 485 s with 2 on a loaded
    2-core machine.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if width % 2 or height % 2:
        raise ValueError(f"width and height must be even so that rgb/2x is an exact half: got {width}x{height}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2 (flow needs a next frame): got {num_frames}")
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1: got {supersample}")
    out_dir = Path(out_dir)
    _prepare_output(out_dir, overwrite)
    with torch_threads(num_threads):
        _render_and_write(preset, out_dir, seed, num_frames, width, height, supersample, on_frame)
    return out_dir


def _render_and_write(
    preset: str,
    out_dir: Path,
    seed: int,
    num_frames: int,
    width: int,
    height: int,
    supersample: int,
    on_frame: Callable[[int, int], None] | None,
) -> None:
    """Render every (time, camera) view, then write the index, scene normalisation, points and provenance."""
    rng = np.random.default_rng(seed)
    scene, spec = PRESETS[preset](rng)
    rigs = dict(zip(writer.CAMERA_IDS, stereo_rig(spec, num_frames, width, height, rng)))
    taus = [t / (num_frames - 1) for t in range(num_frames)]

    near, far = np.inf, 0.0
    point_sources = []
    for t, tau in enumerate(taus):
        for name, cameras in rigs.items():
            camera = cameras[t]
            rgb_fine = render_rgb(scene, camera, tau, supersample)
            rgb = {"1x": area_downsample(rgb_fine, supersample), "2x": area_downsample(rgb_fine, 2 * supersample)}
            truth = {}
            for scale, factor in writer.SCALES.items():
                cam = camera.downscaled(factor)
                if t + 1 < num_frames:
                    truth[scale] = ground_truth(scene, cam, tau, cameras[t + 1].downscaled(factor), taus[t + 1])
                else:
                    truth[scale] = ground_truth(scene, cam, tau)
            writer.write_view(out_dir, writer.view_id(name, t), camera, rgb, truth)
            near = min(near, truth["1x"].distance.min().item())
            far = max(far, truth["1x"].distance.max().item())
            if name == "left" and t < POINT_FRAMES:
                point_sources.append(truth["1x"].world.reshape(-1, 3))
        if on_frame is not None:
            on_frame(t + 1, num_frames)

    # Nerfies-style normalisation: centre on the point of interest, cameras within the unit sphere.
    center = np.asarray(spec.target, np.float64)
    positions = np.stack([c.position for cams in rigs.values() for c in cams])
    scale = 1.0 / np.linalg.norm(positions - center, axis=1).max()
    writer.write_scene(out_dir, center, scale, 0.9 * near * scale, 1.1 * far * scale)
    writer.write_index(out_dir, num_frames)
    points = sparse_points(
        torch.cat(point_sources),
        np.random.default_rng([seed, 1]),
        num_points=POINT_COUNT,
        noise_std=POINT_NOISE / scale,
        outlier_fraction=POINT_OUTLIERS,
    )
    writer.write_points(out_dir, points)
    writer.write_provenance(
        out_dir,
        {
            "generator": "fourd_ns.synthetic",
            "version": GENERATOR_VERSION,
            "preset": preset,
            "seed": seed,
            "num_frames": num_frames,
            "width": width,
            "height": height,
            "supersample": supersample,
            "time": "tau = time_id / (num_frames - 1)",
            "last_frame_flow": "zeros (no next frame)",
            "objects": [{"name": o.name, "dynamic": o.motion.dynamic} for o in scene.objects],
        },
    )
