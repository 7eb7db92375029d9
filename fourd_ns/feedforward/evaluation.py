"""Evaluation of Flow4R weights on held-out synthetic pairs or on sequences in the on-disk format
(``fourd-eval-flow4r`` is the command-line front end).

Two modes, chosen by the ``data`` string of `evaluate`:

- ``synthetic:N`` — **pair evaluation** (`evaluate_pairs`) on N synthetic pairs rendered from the held-out
  validation seeds of training (`fourd_ns.feedforward.training.pair_metrics`): the pose solved from view 1 (Eq. 2)
  next to the identity-pose baseline, the point-map error after median scaling, the end-point error of P_vt and the
  optical-flow EPE of the projected P_vt (ground-truth intrinsics).
- a folder — **anchored-sequence evaluation** (`evaluate_sequences`) of one sequence folder (with ``meta.json``) or
  of every sequence in its subfolders (``docs/sequence_format.md``). The first ``max_frames`` frames (WorldTrack
  uses 64) are scaled to cover ``image_size`` and centre-cropped exactly as the training data is, then run as
  anchored pairs (`reconstruct_sequence`, frame ``anchor`` paired with every frame). Per sequence
  (`evaluate_sequence`, keys and titles in `SEQUENCE_COLUMNS`):

  * pose of every frame in the anchor camera against the ground truth (rotation error, translation error at the
    ground truth's length), next to the identity baseline, and the relative pose error (RPE, consecutive frames,
    after a Sim(3) alignment of the trajectory; translation in ground-truth units, rotation in degrees);
  * point-map error: every frame's points in the anchor camera after one median scale per sequence (ground truth
    from the depth maps and the ground-truth poses), in ground-truth units;
  * with ``tracks.npz``: APD3D and EPE of the anchor's tracks (`evaluate_anchor_tracks`; queries: tracks visible in
    the anchor frame, read at the pixel that contains them; ground truth in the anchor camera at every frame; global
    median alignment), also for the dynamic tracks (`fourd_ns.metrics.tracking.evaluate_tracks`);
  * with ``flow/``: the optical-flow EPE (pixels) of the anchor's P_vt towards the next frame, projected with that
    frame's ground-truth intrinsics, against the ground-truth flow where it is finite and lands inside the image.

  The mean over sequences leaves NaN metrics (e.g. no tracks) out (`sequence_means`).

Error messages name the ``fourd-eval-flow4r`` option at fault (``--data``, ``--anchor``, ``--device``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Optional

import torch
from jaxtyping import Float
from rich.table import Table
from torch import Tensor
from torch.utils.data import DataLoader

from fourd_ns.feedforward.flow4r import Flow4R
from fourd_ns.feedforward.flow4r_geometry import invert_pose, pixel_grid, transform_points, unproject_depth
from fourd_ns.feedforward.flow4r_losses import project
from fourd_ns.feedforward.pair_dataset import CropResize, SyntheticPairDataset, collate_pairs, inside_image
from fourd_ns.feedforward.sequence_format import Sequence, read_sequence
from fourd_ns.feedforward.sequence_inference import reconstruct_sequence
from fourd_ns.feedforward.synthetic_pairs import SyntheticPairSource
from fourd_ns.feedforward.training import VALIDATION_FIRST_SEED, validate, validation_table
from fourd_ns.metrics.camera_pose import pair_pose_error, relative_pose_error
from fourd_ns.metrics.optical_flow import flow_epe
from fourd_ns.metrics.tracking import align_median_scale, end_point_error, evaluate_tracks

SEQUENCE_COLUMNS = (
    ("rotation_error_deg", "rot. err (°)"),
    ("identity_rotation_error_deg", "identity rot. (°)"),
    ("translation_error", "trans. err"),
    ("identity_translation_error", "identity trans."),
    ("rpe_translation", "RPE trans."),
    ("rpe_rotation_deg", "RPE rot. (°)"),
    ("point_error", "point err"),
    ("track_apd3d", "APD3D"),
    ("track_epe", "track EPE"),
    ("track_apd3d_dynamic", "APD3D dyn."),
    ("flow_epe_px", "flow EPE (px)"),
)
"""Metrics of one sequence (keys of `evaluate_sequence`) and their column titles."""

SYNTHETIC_PREFIX = "synthetic:"
"""``data`` strings starting with this select the pair evaluation (``synthetic:N``)."""


def resolve_device(device: Literal["auto", "cuda", "cpu"]) -> torch.device:
    """The torch device for a ``--device`` choice (``auto``: CUDA when torch sees one)."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but torch sees no CUDA device; use --device cpu")
    return torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")


def synthetic_pair_count(data: str) -> Optional[int]:
    """N of a ``synthetic:N`` data string, None when ``data`` names a folder instead."""
    if not data.startswith(SYNTHETIC_PREFIX):
        return None
    count = data.split(":", 1)[1]
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"--data {data}: write synthetic:N with N ≥ 1 pairs")
    return int(count)


def evaluate_pairs(
    model: Flow4R, num_pairs: int, image_size: tuple[int, int], batch_size: int, device: torch.device
) -> dict:
    """Pair evaluation on ``num_pairs`` held-out synthetic pairs of ``image_size`` (H, W).

    Returns ``{"mode": "pairs", "num_pairs": N, "metrics": validate's means}``
    (`fourd_ns.feedforward.training.VALIDATION_METRICS`).
    """
    source = SyntheticPairSource(image_size=tuple(image_size))
    pairs = SyntheticPairDataset(source, num_pairs, first_seed=VALIDATION_FIRST_SEED)
    loader = DataLoader(pairs, batch_size=batch_size, collate_fn=collate_pairs)
    return dict(mode="pairs", num_pairs=len(pairs), metrics=validate(model, loader, device))


def sequence_folders(data: Path) -> list[Path]:
    """``data`` itself if it is a sequence folder, else its subfolders that are."""
    if (data / "meta.json").is_file():
        return [data]
    folders = sorted(path for path in data.iterdir() if (path / "meta.json").is_file()) if data.is_dir() else []
    if not folders:
        raise FileNotFoundError(f"--data {data}: no sequence folder (with meta.json) there or in its subfolders; "
                                "see docs/sequence_format.md, or use --data synthetic:N")
    return folders


def ground_truth_to_anchor(sequence: Sequence, frames: int, anchor: int) -> Float[Tensor, "T 4 4"]:
    """Pose of each of the first ``frames`` cameras in the anchor camera: world→anchor · camera→world."""
    camera_to_world = sequence.camera_to_world[:frames].double()
    return (torch.linalg.inv(camera_to_world[anchor]) @ camera_to_world).float()


def evaluate_sequence(
    model: Flow4R,
    sequence: Sequence,
    image_size: tuple[int, int],
    anchor: int,
    max_frames: int,
    batch_size: int,
    device: torch.device,
) -> dict[str, float]:
    """The metrics of `SEQUENCE_COLUMNS` for one sequence (see the module docstring); NaN where not applicable.

    Args:
        model: the network; its patch size constrains ``image_size``.
        sequence: the sequence; its first ``max_frames`` frames are evaluated.
        image_size: (H, W) of the network input.
        anchor: the anchor frame (outputs and ground truth are expressed in its camera).
        max_frames: frames evaluated, from the first.
        batch_size: pairs per forward pass.
        device: where the network runs.
    """
    frames = min(sequence.num_frames, max_frames)
    if not 0 <= anchor < frames:
        raise ValueError(f"--anchor {anchor} is not one of the {frames} evaluated frames of {sequence.folder}")
    if frames < 2:
        raise ValueError(f"{sequence.folder}: needs at least 2 frames to evaluate, has {frames}")
    resize = CropResize(sequence.image_size, tuple(image_size))
    images = torch.stack([resize.image(sequence.image(t)) for t in range(frames)])
    reconstruction = reconstruct_sequence(model, images, anchor=anchor, batch_size=batch_size, device=device,
                                          patch=model.backbone_config.patch_size)
    predicted = reconstruction.camera_to_anchor.float()
    truth = ground_truth_to_anchor(sequence, frames, anchor)
    others = torch.arange(frames) != anchor
    rotation, _, translation = pair_pose_error(predicted[others], truth[others])
    identity_rotation, _, _ = pair_pose_error(torch.eye(4).expand(int(others.sum()), 4, 4), truth[others])
    rpe_translation, rpe_rotation = relative_pose_error(predicted, truth)
    metrics = dict(
        rotation_error_deg=float(rotation.mean()),
        identity_rotation_error_deg=float(identity_rotation.mean()),
        translation_error=float(translation.nanmean()),
        identity_translation_error=float(truth[others, :3, 3].norm(dim=-1).mean()),
        rpe_translation=rpe_translation,
        rpe_rotation_deg=rpe_rotation,
    )

    intrinsics = torch.stack([resize.intrinsics(sequence.intrinsics[t]) for t in range(frames)])
    depth = torch.stack([resize.nearest(sequence.depth(t)) for t in range(frames)])
    valid = depth > 0
    gt_points = transform_points(truth, unproject_depth(depth, intrinsics))
    scaled, _ = align_median_scale(reconstruction.points, gt_points, valid)
    metrics["point_error"] = float(end_point_error(scaled, gt_points, valid)) if valid.any() else math.nan

    metrics.update(track_apd3d=math.nan, track_epe=math.nan, track_apd3d_dynamic=math.nan)
    if sequence.has_tracks:
        metrics.update(evaluate_anchor_tracks(reconstruction.tracks, sequence, resize, intrinsics, anchor))
    metrics["flow_epe_px"] = math.nan
    if sequence.has_flow and anchor + 1 < frames:
        following = anchor + 1
        # Tracks are T_k·P_vt of the anchor's pixels; T_k⁻¹ brings P_vt back into frame k's camera.
        in_frame = transform_points(invert_pose(predicted[following : following + 1]),
                                    reconstruction.tracks[following : following + 1])
        projected = project(in_frame, intrinsics[following : following + 1], 1e-6)[0]
        height, width = image_size
        target = pixel_grid(height, width) + resize.flow(sequence.flow(anchor))
        flow_valid = torch.isfinite(target).all(-1) & inside_image(target, height, width)
        if flow_valid.any():
            metrics["flow_epe_px"] = float(flow_epe(projected, torch.nan_to_num(target), flow_valid))
    return metrics


def evaluate_anchor_tracks(
    predicted_tracks: Float[Tensor, "T H W 3"],
    sequence: Sequence,
    resize: CropResize,
    intrinsics: Float[Tensor, "T 3 3"],
    anchor: int,
) -> dict[str, float]:
    """WorldTrack-style APD3D / EPE of the anchor's tracks (see the module docstring).

    Args:
        predicted_tracks: the anchor's pixels at each frame's time, in the anchor camera (network resolution).
        sequence: the sequence, with ``tracks.npz``.
        resize: the mapping from the sequence's images to the network input.
        intrinsics: ground-truth intrinsics of each frame at the network resolution.
        anchor: the anchor frame.

    Returns ``track_apd3d``, ``track_epe`` and ``track_apd3d_dynamic``; NaN when no track is a query.
    """
    frames, height, width, _ = predicted_tracks.shape
    tracks = sequence.tracks()
    world_to_anchor = torch.linalg.inv(sequence.camera_to_world[anchor].double()).float()
    truth = transform_points(world_to_anchor[None], tracks.points_world[:, :frames][None])[0]  # [N, T, 3]
    if tracks.pixels is not None:
        pixels = resize.pixels(tracks.pixels[:, anchor])
    else:
        pixels = project(truth[None, :, anchor : anchor + 1], intrinsics[anchor : anchor + 1], 1e-6)[0, :, 0]
    queries = tracks.visible[:, anchor] & inside_image(pixels, height, width) & (truth[:, anchor, 2] > 0)
    if not queries.any():
        return dict(track_apd3d=math.nan, track_epe=math.nan, track_apd3d_dynamic=math.nan)
    columns = pixels[queries, 0].floor().long().clamp(0, width - 1)
    rows = pixels[queries, 1].floor().long().clamp(0, height - 1)
    scores = evaluate_tracks(predicted_tracks[:, rows, columns], truth[queries].transpose(0, 1), alignment="global")
    return dict(track_apd3d=scores.apd3d, track_epe=scores.epe, track_apd3d_dynamic=scores.apd3d_dynamic)


def sequence_means(per_sequence: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean of each `SEQUENCE_COLUMNS` metric over the sequences, NaN values left out."""
    return {key: float(torch.tensor([m[key] for m in per_sequence.values()], dtype=torch.float64).nanmean())
            for key, _ in SEQUENCE_COLUMNS}


def evaluate_sequences(
    model: Flow4R,
    data: Path,
    image_size: tuple[int, int],
    anchor: int,
    max_frames: int,
    batch_size: int,
    device: torch.device,
) -> dict:
    """Anchored-sequence evaluation of every sequence of `sequence_folders` (``data``) with `evaluate_sequence`.

    Returns ``{"mode": "sequences", "sequences": {folder name: metrics}, "mean": sequence_means}``.
    """
    per_sequence = {
        folder.name: evaluate_sequence(model, read_sequence(folder), image_size, anchor, max_frames, batch_size, device)
        for folder in sequence_folders(data)
    }
    return dict(mode="sequences", sequences=per_sequence, mean=sequence_means(per_sequence))


def evaluate(
    model: Flow4R,
    data: str,
    image_size: tuple[int, int] = (224, 224),
    anchor: int = 0,
    max_frames: int = 64,
    batch_size: int = 8,
    device: torch.device = torch.device("cpu"),
) -> dict:
    """`evaluate_pairs` for ``data = "synthetic:N"``, else `evaluate_sequences` of the folder ``data``.

    ``anchor`` and ``max_frames`` only apply to sequences. Returns the chosen function's dictionary.
    """
    num_pairs = synthetic_pair_count(data)
    if num_pairs is not None:
        return evaluate_pairs(model, num_pairs, image_size, batch_size, device)
    return evaluate_sequences(model, Path(data), image_size, anchor, max_frames, batch_size, device)


def sequence_table(results: dict[str, dict[str, float]], mean: dict[str, float]) -> Table:
    """Per-sequence metrics (`SEQUENCE_COLUMNS`) as a rich table, with a last row for their mean."""
    table = Table(title="Flow4R anchored-sequence evaluation")
    table.add_column("sequence")
    for _, title in SEQUENCE_COLUMNS:
        table.add_column(title, justify="right")
    for name, metrics in [*results.items(), ("[bold]mean[/bold]", mean)]:
        table.add_row(name, *[f"{metrics[key]:.4g}" for key, _ in SEQUENCE_COLUMNS])
    return table


def results_table(results: dict) -> Table:
    """The table of an `evaluate` result, whichever the mode."""
    if results["mode"] == "pairs":
        return validation_table(results["metrics"], f"Flow4R on {results['num_pairs']} held-out synthetic pairs")
    return sequence_table(results["sequences"], results["mean"])
