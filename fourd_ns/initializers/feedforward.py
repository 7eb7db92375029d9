"""``flow4r`` and ``flow3r``: seed points, velocities and cameras from a feed-forward reconstruction of the video.

Both run a trained Flow4R checkpoint (:func:`fourd_ns.feedforward.pretrained.load_pretrained`) over the training
video with anchored pairs (:func:`fourd_ns.feedforward.sequence_inference.reconstruct_sequence`), after resizing the
frames for the network (long side ``long_side``, sides cropped to multiples of the patch size). Then:

1. **World frame.** The reconstruction lives in the anchor camera (OpenCV axes, the network's scale). When the
   dataset has cameras, one similarity carries points, tracks and cameras into the dataparser's world
   (``world_alignment``). By default (``auto``) it puts the anchor camera at its dataset pose and takes the scale
   from depth: the median depth of the dataset points in the anchor's view over that of the network's confident
   anchor point map (:func:`anchor_depth_sim3`). Without dataset points it falls back to a Sim(3) fit of the
   predicted camera centres to the dataset's (:func:`fourd_ns.geometry.similarity.align_camera_poses`, which uses
   the first camera for straight or static trajectories). The trajectory fit was the first design; it failed in
   practice: monocular captures barely move the camera, so its scale is set by the noise of the predicted
   translations — with a small CPU-trained model on the synthetic `press` scene it shrank the whole point cloud to a
   1 cm blob at the cameras and training never recovered (PSNR 6.0). The log reports the camera-centre RMSE against
   the dataset cameras either way. OpenGL ↔ OpenCV conversion happens once, in :func:`switch_c2w_camera_axes`.
2. **Points.** Every frame contributes its own points at its own time (so regions the anchor never sees are seeded
   too). Pixels with non-finite predictions are dropped, then those below the ``confidence_quantile`` of the
   confidence over all frames; a seeded random subset of ``num_points`` remains. Colours are the resized frames'
   pixels. ``point_times`` is each point's frame time.
3. **Velocities** (world units per unit of normalised time). Only the anchor's pixels are tracked through the video
   (``SequenceReconstruction.tracks``), so velocities are first computed for them, by finite differences over the
   non-uniform frame times (``torch.gradient``: second-order central in the interior, one-sided at the ends). A seed
   point from frame t takes the velocity of the nearest tracked point at time t (a k-d tree per frame, over the
   anchor pixels that pass the confidence threshold). Points that the anchor does not see inherit the velocity of
   their nearest tracked neighbour — for disoccluded background, usually another static point. A one-frame video
   has no velocities.

What differs between the two (the honest part):

- ``flow4r`` tracks the anchor's pixels with the regressed 3D correspondence ``P_vt`` of the anchor view (paper
  Eq. 6): the network's scene-flow prediction, defined for occluded points as well.
- ``flow3r`` needs a checkpoint trained with the factored-flow head (``Flow4RConfig.factored_flow``). It tracks an
  anchor pixel into frame t by its predicted 2D correspondence there, lifted to 3D with frame t's own point map
  (bilinear lookup). 2D correspondences are supervised by far more data (optical flow, 2D tracks) than 3D scene
  flow, which is Flow3r's argument; but the lift is only right where the point is visible in frame t — where it is
  occluded it takes the occluder's depth. Correspondences that leave frame t fall back to the ``flow4r`` track.
  The correspondences also change the seeds: a lifted correspondence that agrees with Flow4R's 3D track of the same
  anchor pixel (within ``consistency_threshold`` of its depth) is a surface point seen in frame t and identified
  with an anchor pixel, so ``correspondence_share`` of the seeds are such points (at frame t's time, with the
  anchor's colour and the track's own velocity, no nearest-neighbour lookup); the rest are point-map pixels as for
  flow4r. Where nothing passes the check (e.g. an untrained head) every seed comes from the point maps.
  Our factored-flow head rides on the Flow4R backbone; real Flow3r weights (a DINOv2/π³ network) cannot be loaded.

Checkpoints must hold trained heads: a CroCo or DUSt3R checkpoint loads into Flow4R with (partly) fresh heads, and
seeding a scene from random head weights would silently produce noise, so any missing or shape-mismatched key is
an error that says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Type

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from scipy.spatial import cKDTree
from torch import Tensor

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.utils.rich_utils import CONSOLE

from fourd_ns.feedforward.flow4r import Flow4R
from fourd_ns.feedforward.pair_types import PairPrediction, SequenceReconstruction
from fourd_ns.feedforward.pretrained import LoadReport, load_pretrained
from fourd_ns.feedforward.sequence_inference import (
    NetworkResize,
    intrinsics_to_original,
    reconstruct_sequence,
    resize_for_network,
)
from fourd_ns.geometry.camera_conventions import switch_c2w_camera_axes
from fourd_ns.geometry.pinhole import project_camera_points
from fourd_ns.geometry.similarity import align_camera_poses, apply_sim3, apply_sim3_to_c2w, sim3_matrix, sim3_scale
from fourd_ns.initializers.base import Initializer, InitializerConfig, InitializerInputs, InitializerResult


@dataclass
class FeedForwardInitializerConfig(InitializerConfig):
    """Settings shared by the flow4r and flow3r initializers."""

    weights: str = field(kw_only=True)
    """Trained Flow4R checkpoint: a folder written by fourd_ns.feedforward.pretrained.save_pretrained, a Hugging Face
    hub id of such a folder, or a .pth file. Its heads must be trained (not a bare CroCo/DUSt3R checkpoint)."""
    num_points: int = 100000
    """Number of seed points (fewer when fewer pixels pass the confidence threshold)."""
    confidence_quantile: float = 0.5
    """Keep pixels whose confidence is at least this quantile of all frames' confidences (0 keeps every pixel)."""
    long_side: int = 512
    """Long side of the frames fed to the network, in pixels (sides are then cropped to multiples of the patch)."""
    anchor: int = 0
    """Index of the anchor frame in the training video (all pairs are (anchor, frame t))."""
    batch_size: int = 4
    """Pairs per forward pass."""
    seed: int = 0
    """Seed of the random subset of confident pixels."""
    world_alignment: Literal["auto", "anchor-depth", "trajectory"] = "auto"
    """How the reconstruction (anchor camera, network scale) is placed in the dataset's world when the dataset has
    cameras. ``anchor-depth``: at the anchor frame's dataset pose, scaled so that the median depth of the network's
    anchor point map equals that of the dataset points the anchor camera sees (robust when the camera barely moves,
    as in most monocular captures, and when the predicted translations are poor). ``trajectory``: a Sim(3) fit of
    the predicted camera centres to the dataset's. ``auto``: anchor-depth when the dataset has points in the anchor's
    view, else trajectory."""


@dataclass
class Flow4RInitializerConfig(FeedForwardInitializerConfig):
    """Seed points, velocities and cameras from Flow4R run over the training video (anchored pairs)."""

    _target: Type = field(default_factory=lambda: Flow4RInitializer)


@dataclass
class Flow3rInitializerConfig(FeedForwardInitializerConfig):
    """As flow4r, with motion from the factored-flow head's 2D correspondences and part of the seeds lifted from the
    consistent ones (checkpoint needs factored_flow)."""

    _target: Type = field(default_factory=lambda: Flow3rInitializer)
    correspondence_share: float = 0.5
    """Share of ``num_points`` taken from anchor pixels' correspondences that pass the consistency check, lifted
    into the frame they land in (the rest come from the point maps, as for flow4r); 0 seeds like flow4r."""
    consistency_threshold: float = 0.05
    """A lifted correspondence is consistent when it lies within this fraction of its depth of Flow4R's 3D track of
    the same anchor pixel (the two motion estimates agree, so the point is visible where it landed)."""


def weights_identity(weights: str) -> dict:
    """What identifies a checkpoint in a cache key: for local files their resolved paths, sizes and modification
    times (every file of a folder); for a hub id, the id (the hub snapshot is resolved only when loading)."""
    path = Path(weights).expanduser()
    if not path.exists():
        return {"hub_id": weights}
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {
        "path": str(path.resolve()),
        "files": [[str(p.relative_to(path)) if path.is_dir() else p.name, p.stat().st_size, p.stat().st_mtime_ns]
                  for p in files],
    }


def select_confident_pixels(
    confidence: Float[Tensor, "T H W"],
    finite: Bool[Tensor, "T H W"],
    quantile: float,
    count: int,
    generator: torch.Generator,
) -> tuple[Int[Tensor, "N"], float]:
    """Flat indices of at most ``count`` pixels, drawn uniformly among the finite ones whose confidence is at least
    the ``quantile`` of the finite confidences, sorted; and that threshold."""
    if not 0.0 <= quantile < 1.0:
        raise ValueError(f"pipeline.initializer.confidence-quantile must be in [0, 1), got {quantile}")
    flat_finite = finite.reshape(-1)
    values = confidence.reshape(-1)[flat_finite].float()
    if values.numel() == 0:
        raise ValueError("The feed-forward reconstruction has no finite point: the checkpoint's predictions overflow.")
    rank = int(quantile * (values.numel() - 1))
    threshold = float(torch.kthvalue(values, rank + 1).values)  # kthvalue: no size limit, unlike torch.quantile
    candidates = torch.nonzero(flat_finite & (confidence.reshape(-1) >= threshold)).squeeze(1)
    if candidates.numel() > count:
        chosen = torch.randperm(candidates.numel(), generator=generator)[:count]
        candidates = candidates[chosen].sort().values
    return candidates, threshold


def track_velocities(tracks: Float[Tensor, "T M 3"], times: Float[Tensor, "T"]) -> Float[Tensor, "T M 3"]:
    """d(track)/dt at every frame, by finite differences over non-uniform times (needs T ≥ 2 distinct times)."""
    if tracks.shape[0] < 2:
        raise ValueError("Velocities need at least two frames")
    spacing = (times.to(tracks.dtype),)
    return torch.gradient(tracks, spacing=spacing, dim=0, edge_order=1)[0]


def nearest_track_velocities(
    points: Float[Tensor, "N 3"],
    frames: Int[Tensor, "N"],
    tracks: Float[Tensor, "T M 3"],
    velocities: Float[Tensor, "T M 3"],
    valid: Bool[Tensor, "M"],
) -> Float[Tensor, "N 3"]:
    """Each point (observed in frame ``frames[i]``) gets the velocity of the nearest valid tracked point at that
    frame's time (of the nearest tracked point when none is valid)."""
    if not bool(valid.any()):
        valid = torch.ones_like(valid)
    result = torch.zeros_like(points)
    for frame in torch.unique(frames).tolist():
        mine = frames == frame
        tree = cKDTree(tracks[frame][valid].double().numpy())
        _, nearest = tree.query(points[mine].double().numpy(), k=1)
        result[mine] = velocities[frame][valid][torch.from_numpy(nearest).long()]
    return result


def lift_correspondences(
    points: Float[Tensor, "T H W 3"], correspondences: Float[Tensor, "T H W 2"]
) -> tuple[Float[Tensor, "T H W 3"], Bool[Tensor, "T H W"]]:
    """3D positions of correspondences: frame t's point map sampled (bilinearly) where each anchor pixel lands in
    frame t, and whether it lands inside the image. Pixel coordinates have pixel centres at integer + 0.5."""
    _, height, width, _ = points.shape
    u, v = correspondences[..., 0], correspondences[..., 1]
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    grid = torch.stack((2.0 * u / width - 1.0, 2.0 * v / height - 1.0), dim=-1)  # align_corners=False convention
    lifted = F.grid_sample(points.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="border",
                           align_corners=False)
    return lifted.permute(0, 2, 3, 1), inside


def camera_to_world_opencv(cameras: Cameras) -> Float[Tensor, "T 4 4"]:
    """nerfstudio cameras' camera-to-world poses as 4×4 matrices with OpenCV camera axes."""
    c2w = cameras.camera_to_worlds.double()
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=c2w.dtype).expand(c2w.shape[0], 1, 4)
    return switch_c2w_camera_axes(torch.cat((c2w, bottom), dim=1))


def anchor_depth_sim3(
    reconstruction: SequenceReconstruction,
    inputs: InitializerInputs,
    anchor_camera_to_world: Float[Tensor, "4 4"],
    anchor: int,
) -> Optional[Float[Tensor, "4 4"]]:
    """The similarity ``[[s·R, c], [0, 1]]`` that puts the anchor camera at its dataset pose (R, c; OpenCV axes) with
    the scale s = median depth of the dataset points inside the anchor's view / median depth of the network's anchor
    point map (its confident half); None when the dataset has no point in view or the network no point in front."""
    if inputs.dataset_points is None or inputs.cameras is None:
        return None
    rotation, centre = anchor_camera_to_world[:3, :3], anchor_camera_to_world[:3, 3]
    local = (inputs.dataset_points.double() - centre) @ rotation  # Rᵀ (p − c) for row vectors
    camera = inputs.cameras[anchor]
    projection = project_camera_points(
        local, float(camera.fx), float(camera.fy), float(camera.cx), float(camera.cy), min_depth=1e-9
    )
    (u, v), depth = projection.pixels.unbind(-1), projection.depth
    seen = projection.in_front & (u >= 0) & (u < int(camera.width)) & (v >= 0) & (v < int(camera.height))
    predicted = reconstruction.points[anchor, ..., 2].double()
    confidence = reconstruction.confidence[anchor].double()
    usable = torch.isfinite(predicted) & torch.isfinite(confidence) & (predicted > 1e-9)
    if not seen.any() or not usable.any():
        return None
    usable &= confidence >= confidence[usable].median()
    scale = depth[seen].median() / predicted[usable].median()
    return sim3_matrix(scale, rotation, centre)


@dataclass
class LiftedCorrespondences:
    """The anchor pixels' factored-flow correspondences lifted into each frame (in the anchor camera)."""

    points: Float[Tensor, "T H W 3"]
    """Frame t's point map sampled where each anchor pixel lands in frame t."""
    consistent: Bool[Tensor, "T H W"]
    """Inside frame t and within the consistency threshold of Flow4R's track; never set for the anchor frame."""


def consistent_correspondences(
    lifted: Float[Tensor, "T H W 3"], inside: Bool[Tensor, "T H W"], tracks: Float[Tensor, "T H W 3"],
    anchor: int, threshold: float,
) -> Bool[Tensor, "T H W"]:
    """Lifted correspondences within ``threshold`` × depth of the 3D track of the same anchor pixel (anchor camera
    coordinates, so depth is z); the anchor frame itself is excluded (its correspondences are the identity)."""
    depth = tracks[..., 2].abs().clamp_min(1e-6)
    agree = (lifted - tracks).norm(dim=-1) <= threshold * depth
    finite = torch.isfinite(lifted).all(-1) & torch.isfinite(tracks).all(-1)
    result = inside & agree & finite
    result[anchor] = False
    return result


class _CorrespondenceRecorder:
    """Wraps a model for ``reconstruct_sequence`` and keeps each batch's anchor → frame correspondences.

    ``reconstruct_sequence`` calls the model on (anchor, frame) pairs in frame order; the factored-flow output of the
    anchor view (``correspondence1``) is what it does not return.
    """

    def __init__(self, model: Flow4R) -> None:
        self.model = model
        self.batches: list[Tensor] = []

    def __call__(self, image1: Tensor, image2: Tensor) -> PairPrediction:
        prediction = self.model(image1, image2)
        self.batches.append(prediction.correspondence1.float().cpu())
        return prediction


class Flow4RInitializer(Initializer):
    """See the module docstring."""

    name = "flow4r"
    config: FeedForwardInitializerConfig

    def identity(self) -> dict:
        return {**super().identity(), "weights_identity": weights_identity(self.config.weights)}

    def load_model(self) -> Flow4R:
        """The checkpoint's Flow4R with every weight this initializer uses loaded (else a ValueError)."""
        model, report = load_pretrained(self.config.weights, config_overrides={"factored_flow": False})
        return self._checked(model, report)

    def _checked(self, model: Flow4R, report: LoadReport) -> Flow4R:
        report.print(CONSOLE)
        untrained = report.missing + sorted(report.shape_mismatched)
        if untrained:
            raise ValueError(
                f"pipeline.initializer.weights={self.config.weights} does not hold a trained Flow4R: {len(untrained)} "
                f"weights would start untrained ({', '.join(untrained[:4])}{', …' if len(untrained) > 4 else ''}). "
                "CroCo and DUSt3R checkpoints only initialise Flow4R for training; pass a checkpoint saved after "
                "training (fourd_ns.feedforward.pretrained.save_pretrained)."
            )
        return model

    def reconstruct(
        self, model: Flow4R, images: Float[Tensor, "T 3 H W"], device: torch.device | str
    ) -> tuple[SequenceReconstruction, Float[Tensor, "T H W 3"], Optional[LiftedCorrespondences]]:
        """The anchored reconstruction, the anchor pixels' tracks used for motion, and (flow3r) the lifted
        correspondences."""
        reconstruction = reconstruct_sequence(model, images, anchor=self.config.anchor,
                                              batch_size=self.config.batch_size, device=device,
                                              patch=model.backbone_config.patch_size)
        return reconstruction, reconstruction.tracks, None

    def initialize(self, inputs: InitializerInputs, device: torch.device | str = "cpu") -> InitializerResult:
        config = self.config
        video = inputs.video()
        if not 0 <= config.anchor < video.shape[0]:
            raise ValueError(f"pipeline.initializer.anchor={config.anchor} is not a frame of the {video.shape[0]}-frame "
                             f"training video of {inputs.source}")
        if config.num_points < 1:
            raise ValueError(f"pipeline.initializer.num-points must be at least 1, got {config.num_points}")
        model = self.load_model().to(device).eval()
        images, resize = resize_for_network(video, config.long_side, patch=model.backbone_config.patch_size)
        CONSOLE.log(f"Initializer '{self.name}': {video.shape[0]} frames at {resize.size[1]}×{resize.size[0]} "
                    f"(from {resize.original_size[1]}×{resize.original_size[0]}), anchor frame {config.anchor}")
        reconstruction, tracks, correspondences = self.reconstruct(model, images, device)
        return self.seed_from(reconstruction, tracks, resize, inputs, correspondences)

    def seed_from(
        self,
        reconstruction: SequenceReconstruction,
        tracks: Float[Tensor, "T H W 3"],
        resize: NetworkResize,
        inputs: InitializerInputs,
        correspondences: Optional[LiftedCorrespondences] = None,
    ) -> InitializerResult:
        """Steps 1–3 of the module docstring on an anchored reconstruction of ``inputs``' video at the network
        resolution that ``resize`` describes; ``tracks`` are the anchor pixels' positions at every frame time. With
        ``correspondences`` (flow3r), ``correspondence_share`` of the seeds are its consistent lifted points."""
        config = self.config
        camera_to_world = reconstruction.camera_to_anchor.double()
        sim3 = torch.eye(4, dtype=torch.float64)
        if inputs.cameras is not None:
            reference = camera_to_world_opencv(inputs.cameras)
            anchored = None
            if config.world_alignment != "trajectory":
                anchored = anchor_depth_sim3(reconstruction, inputs, reference[config.anchor], config.anchor)
                if anchored is None and config.world_alignment == "anchor-depth":
                    raise ValueError(f"pipeline.initializer.world-alignment anchor-depth: none of the dataset points of "
                                     f"{inputs.source} is in view of the anchor camera {config.anchor}; use "
                                     "trajectory")
            if anchored is not None:
                sim3, how = anchored, "at the anchor camera, scaled by the dataset points' median depth"
                camera_to_world = apply_sim3_to_c2w(sim3, camera_to_world)
            else:
                sim3, camera_to_world = align_camera_poses(camera_to_world, reference)
                how = "by a Sim(3) fit of the camera centres"
            rmse = float((camera_to_world[:, :3, 3] - reference[:, :3, 3]).square().sum(-1).mean().sqrt())
            CONSOLE.log(f"Initializer '{self.name}': reconstruction placed in the dataset's world {how} (scale "
                        f"{float(sim3_scale(sim3)):.4g}); camera-centre RMSE against the dataset cameras {rmse:.4g} "
                        "(dataset units)")

        frames, height, width = reconstruction.confidence.shape
        points = apply_sim3(sim3, reconstruction.points.double()).float()
        finite = torch.isfinite(points).all(-1) & torch.isfinite(reconstruction.confidence)
        generator = torch.Generator().manual_seed(config.seed)
        share = getattr(config, "correspondence_share", 0.0) if correspondences is not None else 0.0
        from_tracks = int(round(share * config.num_points))
        chosen, threshold = select_confident_pixels(reconstruction.confidence, finite, config.confidence_quantile,
                                                    config.num_points - from_tracks, generator)
        chosen_frames = chosen // (height * width)
        seeds = points.reshape(-1, 3)[chosen]
        colors = (reconstruction.colors.reshape(-1, 3)[chosen].clamp(0, 1) * 255).round().to(torch.uint8)
        times = inputs.times.float()

        velocities = None
        track_velocity = None
        if frames >= 2:
            world_tracks = apply_sim3(sim3, tracks.double()).float().reshape(frames, height * width, 3)
            anchor_confidence = reconstruction.confidence[config.anchor].reshape(-1)
            valid = (anchor_confidence >= threshold) & torch.isfinite(world_tracks).all(-1).all(0)
            world_tracks = torch.nan_to_num(world_tracks)
            track_velocity = track_velocities(world_tracks, times)
            velocities = nearest_track_velocities(seeds, chosen_frames, world_tracks, track_velocity, valid)

        if from_tracks > 0:
            extra = self.correspondence_seeds(correspondences, reconstruction, sim3, threshold, track_velocity,
                                              from_tracks, generator)  # fmt: skip
            if extra is None:  # nothing consistent: the whole budget from the point maps
                chosen, _ = select_confident_pixels(reconstruction.confidence, finite, config.confidence_quantile,
                                                    config.num_points, generator)  # fmt: skip
                chosen_frames = chosen // (height * width)
                seeds = points.reshape(-1, 3)[chosen]
                colors = (reconstruction.colors.reshape(-1, 3)[chosen].clamp(0, 1) * 255).round().to(torch.uint8)
                if velocities is not None:
                    velocities = nearest_track_velocities(seeds, chosen_frames, world_tracks, track_velocity, valid)
            else:
                extra_points, extra_colors, extra_frames, extra_velocities = extra
                seeds = torch.cat((seeds, extra_points))
                colors = torch.cat((colors, extra_colors))
                chosen_frames = torch.cat((chosen_frames, extra_frames))
                if velocities is not None:
                    velocities = torch.cat((velocities, extra_velocities))

        return InitializerResult(
            points=seeds,
            colors=colors,
            point_times=times[chosen_frames],
            velocities=velocities,
            camera_to_worlds=switch_c2w_camera_axes(camera_to_world[:, :3, :]).float(),
            intrinsics=intrinsics_to_original(reconstruction.intrinsics.float(), resize),
        )


    def correspondence_seeds(
        self,
        correspondences: LiftedCorrespondences,
        reconstruction: SequenceReconstruction,
        sim3: Float[Tensor, "4 4"],
        threshold: Tensor,
        track_velocity: Optional[Float[Tensor, "T M 3"]],
        count: int,
        generator: torch.Generator,
    ) -> Optional[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Up to ``count`` consistent lifted correspondences of confident anchor pixels (a seeded random subset):
        world positions, the anchor pixels' colours, frame indices and their tracks' velocities at that frame; None
        when none is consistent."""
        frames, height, width = reconstruction.confidence.shape
        anchor = self.config.anchor
        confident = reconstruction.confidence[anchor] >= threshold
        usable = (correspondences.consistent & confident[None]).reshape(-1)
        candidates = torch.nonzero(usable).reshape(-1)
        CONSOLE.log(f"Initializer '{self.name}': {candidates.numel()} lifted correspondences of confident anchor pixels "
                    f"pass the consistency check ({self.config.consistency_threshold:g} of depth)")
        if candidates.numel() == 0:
            return None
        if candidates.numel() > count:
            candidates = candidates[torch.randperm(candidates.numel(), generator=generator)[:count]].sort().values
        frame = candidates // (height * width)
        pixel = candidates % (height * width)
        world = apply_sim3(sim3, correspondences.points.reshape(-1, 3)[candidates].double()).float()
        colors = reconstruction.colors[anchor].reshape(-1, 3)[pixel]
        colors = (colors.clamp(0, 1) * 255).round().to(torch.uint8)
        velocity = (track_velocity[frame, pixel] if track_velocity is not None
                    else torch.zeros(candidates.numel(), 3))  # fmt: skip
        return world, colors, frame, velocity


class Flow3rInitializer(Flow4RInitializer):
    """See the module docstring: motion from factored-flow correspondences lifted to 3D."""

    name = "flow3r"

    def load_model(self) -> Flow4R:
        model, report = load_pretrained(self.config.weights)
        if not model.config.factored_flow:
            raise ValueError(
                f"pipeline.initializer.weights={self.config.weights} has no factored-flow head (its config has "
                "factored_flow false), which the flow3r initializer needs; use pipeline.initializer:flow4r with this "
                "checkpoint, or one trained with Flow4RConfig(factored_flow=True)."
            )
        return self._checked(model, report)

    def reconstruct(
        self, model: Flow4R, images: Float[Tensor, "T 3 H W"], device: torch.device | str
    ) -> tuple[SequenceReconstruction, Float[Tensor, "T H W 3"], Optional[LiftedCorrespondences]]:
        recorder = _CorrespondenceRecorder(model)
        reconstruction = reconstruct_sequence(recorder, images, anchor=self.config.anchor,
                                              batch_size=self.config.batch_size, device=device,
                                              patch=model.backbone_config.patch_size)
        correspondences = torch.cat(recorder.batches)
        lifted, inside = lift_correspondences(reconstruction.points, correspondences)
        CONSOLE.log(f"Initializer '{self.name}': {float(inside.float().mean()) * 100:.1f}% of the anchor's "
                    "correspondences stay in view and are lifted to 3D; the rest keep Flow4R's tracks.")
        tracks = torch.where(inside[..., None], lifted, reconstruction.tracks)
        consistent = consistent_correspondences(lifted, inside, reconstruction.tracks, self.config.anchor,
                                                self.config.consistency_threshold)  # fmt: skip
        return reconstruction, tracks, LiftedCorrespondences(points=lifted, consistent=consistent)
