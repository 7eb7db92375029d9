"""`fourd-eval-flow4r`: evaluate Flow4R weights on held-out synthetic pairs or on sequences in the on-disk format.

Examples::

    fourd-eval-flow4r --checkpoint outputs/flow4r-s1/checkpoints/step-0350000 --data synthetic:500
    fourd-eval-flow4r --checkpoint outputs/flow4r-s2 --data data/eval_sequences --output-json eval.json

Two modes, chosen by ``--data``:

- ``synthetic:N`` — **pair evaluation** on N synthetic pairs rendered from the held-out validation seeds of training
  (`fourd_ns.feedforward.training.pair_metrics`): the pose solved from view 1 (Eq. 2) next to the identity-pose
  baseline, the point-map error after median scaling, the end-point error of P_vt and the optical-flow EPE of the
  projected P_vt (ground-truth intrinsics).
- a folder — **anchored-sequence evaluation** of one sequence folder (with ``meta.json``) or of every sequence in
  its subfolders (``docs/sequence_format.md``). The first ``--max-frames`` frames (WorldTrack uses 64) are scaled to
  cover ``--image-size`` and centre-cropped exactly as the training data is, then run as anchored pairs
  (`reconstruct_sequence`, frame ``--anchor`` paired with every frame). Per sequence:

  * pose of every frame in the anchor camera against the ground truth (rotation error, translation error at the
    ground truth's length), next to the identity baseline, and the relative pose error (RPE, consecutive frames,
    after a Sim(3) alignment of the trajectory; translation in ground-truth units, rotation in degrees);
  * point-map error: every frame's points in the anchor camera after one median scale per sequence (ground truth
    from the depth maps and the ground-truth poses), in ground-truth units;
  * with ``tracks.npz``: APD3D and EPE of the anchor's tracks (queries: tracks visible in the anchor frame, read at
    the pixel that contains them; ground truth in the anchor camera at every frame; global median alignment), also
    for the dynamic tracks (`fourd_ns.metrics.tracking.evaluate_tracks`);
  * with ``flow/``: the optical-flow EPE (pixels) of the anchor's P_vt towards the next frame, projected with that
    frame's ground-truth intrinsics, against the ground-truth flow where it is finite and lands inside the image.

  The table shows each sequence and the mean over sequences (NaN metrics, e.g. no tracks, are left out of means).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch
import tyro
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader

from fourd_ns.feedforward.flow4r import Flow4R
from fourd_ns.feedforward.flow4r_geometry import invert_pose, pixel_grid, transform_points, unproject_depth
from fourd_ns.feedforward.flow4r_losses import project
from fourd_ns.feedforward.pair_dataset import CropResize, SyntheticPairDataset, collate_pairs, inside_image
from fourd_ns.feedforward.pretrained import from_pretrained
from fourd_ns.feedforward.sequence_format import Sequence, read_sequence
from fourd_ns.feedforward.sequence_inference import reconstruct_sequence
from fourd_ns.feedforward.synthetic_pairs import SyntheticPairSource
from fourd_ns.feedforward.training import VALIDATION_FIRST_SEED, validate, validation_table
from fourd_ns.metrics.camera_pose import pair_pose_error, relative_pose_error
from fourd_ns.metrics.optical_flow import flow_epe
from fourd_ns.metrics.tracking import align_median_scale, end_point_error, evaluate_tracks


@dataclass
class EvalArgs:
    checkpoint: str
    """Flow4R weights: a checkpoint folder, a run's checkpoint, a ``.pth`` or a hub id (anything from_pretrained
    reads)."""
    data: str
    """``synthetic:N`` for N held-out synthetic pairs, or a sequence folder / a folder of sequence folders."""
    output_json: Optional[Path] = None
    """Also write the metrics to this JSON file."""
    image_size: tuple[int, int] = (224, 224)
    """(height, width) of the network input, multiples of the patch size."""
    anchor: int = 0
    """Anchor frame of the sequence evaluation."""
    max_frames: int = 64
    """Frames evaluated per sequence (from the first)."""
    batch_size: int = 8
    """Pairs per forward pass."""
    device: Literal["auto", "cuda", "cpu"] = "auto"
    """Where the network runs."""


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


def sequence_folders(data: Path) -> list[Path]:
    """``data`` itself if it is a sequence folder, else its subfolders that are."""
    if (data / "meta.json").is_file():
        return [data]
    folders = sorted(path for path in data.iterdir() if (path / "meta.json").is_file()) if data.is_dir() else []
    if not folders:
        raise FileNotFoundError(f"--data {data}: no sequence folder (with meta.json) there or in its subfolders; "
                                "see docs/sequence_format.md, or use --data synthetic:N")
    return folders


def ground_truth_to_anchor(sequence: Sequence, frames: int, anchor: int) -> torch.Tensor:
    """[T, 4, 4] pose of each frame's camera in the anchor camera: world→anchor · camera→world."""
    camera_to_world = sequence.camera_to_world[:frames].double()
    return (torch.linalg.inv(camera_to_world[anchor]) @ camera_to_world).float()


def evaluate_sequence(model: Flow4R, sequence: Sequence, args: EvalArgs, device: torch.device) -> dict[str, float]:
    """The metrics of `SEQUENCE_COLUMNS` for one sequence (see the module docstring); NaN where not applicable."""
    frames = min(sequence.num_frames, args.max_frames)
    if not 0 <= args.anchor < frames:
        raise ValueError(f"--anchor {args.anchor} is not one of the {frames} evaluated frames of {sequence.folder}")
    if frames < 2:
        raise ValueError(f"{sequence.folder}: needs at least 2 frames to evaluate, has {frames}")
    resize = CropResize(sequence.image_size, tuple(args.image_size))
    images = torch.stack([resize.image(sequence.image(t)) for t in range(frames)])
    reconstruction = reconstruct_sequence(model, images, anchor=args.anchor, batch_size=args.batch_size,
                                          device=device, patch=model.backbone_config.patch_size)
    predicted = reconstruction.camera_to_anchor.float()
    truth = ground_truth_to_anchor(sequence, frames, args.anchor)
    others = torch.arange(frames) != args.anchor
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
        metrics.update(evaluate_anchor_tracks(reconstruction.tracks, sequence, resize, intrinsics, truth, args.anchor))
    metrics["flow_epe_px"] = math.nan
    if sequence.has_flow and args.anchor + 1 < frames:
        following = args.anchor + 1
        # Tracks are T_k·P_vt of the anchor's pixels; T_k⁻¹ brings P_vt back into frame k's camera.
        in_frame = transform_points(invert_pose(predicted[following : following + 1]),
                                    reconstruction.tracks[following : following + 1])
        projected = project(in_frame, intrinsics[following : following + 1], 1e-6)[0]
        height, width = args.image_size
        target = pixel_grid(height, width) + resize.flow(sequence.flow(args.anchor))
        flow_valid = torch.isfinite(target).all(-1) & inside_image(target, height, width)
        if flow_valid.any():
            metrics["flow_epe_px"] = float(flow_epe(projected, torch.nan_to_num(target), flow_valid))
    return metrics


def evaluate_anchor_tracks(
    predicted_tracks: torch.Tensor, sequence: Sequence, resize: CropResize, intrinsics: torch.Tensor,
    truth_to_anchor: torch.Tensor, anchor: int,
) -> dict[str, float]:
    """WorldTrack-style APD3D / EPE of the anchor's tracks (see the module docstring)."""
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


def sequence_table(results: dict[str, dict[str, float]], mean: dict[str, float]) -> Table:
    table = Table(title="Flow4R anchored-sequence evaluation")
    table.add_column("sequence")
    for _, title in SEQUENCE_COLUMNS:
        table.add_column(title, justify="right")
    for name, metrics in [*results.items(), ("[bold]mean[/bold]", mean)]:
        table.add_row(name, *[f"{metrics[key]:.4g}" for key, _ in SEQUENCE_COLUMNS])
    return table


def resolve_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but torch sees no CUDA device; use --device cpu")
    return torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")


def main(args: EvalArgs) -> dict:
    """Run the evaluation, print it, write ``--output-json`` if given and return what was written."""
    console = Console()
    device = resolve_device(args.device)
    model = from_pretrained(args.checkpoint, console=console).to(device)
    if args.data.startswith("synthetic:"):
        count = args.data.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"--data {args.data}: write synthetic:N with N ≥ 1 pairs")
        source = SyntheticPairSource(image_size=tuple(args.image_size))
        pairs = SyntheticPairDataset(source, int(count), first_seed=VALIDATION_FIRST_SEED)
        loader = DataLoader(pairs, batch_size=args.batch_size, collate_fn=collate_pairs)
        metrics = validate(model, loader, device)
        console.print(validation_table(metrics, f"Flow4R on {len(pairs)} held-out synthetic pairs"))
        results = dict(mode="pairs", checkpoint=args.checkpoint, num_pairs=len(pairs), metrics=metrics)
    else:
        per_sequence = {}
        for folder in sequence_folders(Path(args.data)):
            per_sequence[folder.name] = evaluate_sequence(model, read_sequence(folder), args, device)
        mean = {key: float(torch.tensor([m[key] for m in per_sequence.values()], dtype=torch.float64).nanmean())
                for key, _ in SEQUENCE_COLUMNS}
        console.print(sequence_table(per_sequence, mean))
        results = dict(mode="sequences", checkpoint=args.checkpoint, sequences=per_sequence, mean=mean)
    if args.output_json is not None:
        args.output_json.parent.mkdir(parents=True, exist_ok=True)
        args.output_json.write_text(json.dumps(results, indent=2) + "\n")
        console.print(f"Wrote {args.output_json}")
    return results


def entrypoint() -> None:
    """Console-script entry point (`fourd-eval-flow4r`)."""
    args = tyro.cli(EvalArgs, description=__doc__.splitlines()[0])
    try:
        main(args)
    except (FileNotFoundError, ValueError) as error:
        Console(stderr=True).print(f"[red]fourd-eval-flow4r:[/red] {error}")
        raise SystemExit(2) from error


if __name__ == "__main__":
    entrypoint()
