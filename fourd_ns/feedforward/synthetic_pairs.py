"""Training pairs rendered on the fly by the analytic scene engine (``fourd_ns.synthetic``), with exact ground truth
for every Flow4R target at any frame gap and nothing stored on disk.

A pair is a pure function of an integer seed (``SyntheticPairSource.pair(seed)``): the seed picks a preset scene
(by default the seeded ``random`` arrangement of moving objects on a table), whether the scene is dynamic, two clip
times within ``max_frame_gap`` frames (paper §4: "a neighbor within 50 frames"), and two cameras around the scene.

**Ground truth of one view** (camera a at time τa, other view b at τb), from one ray through each pixel centre (RGB
alone is supersampled; averaging geometry across an edge would give points on no surface):

- ``points`` P̄ — the hit points in camera a; ``valid`` wherever the ray hits something (the presets' room makes
  that every pixel).
- ``points_other`` P̄_vt — the *material* point that was hit, moved with its object's affine motion to τb
  (``fourd_ns.synthetic.scene.material_points_at``, which the flow ground truth of ``fourd_ns.synthetic`` uses too)
  and expressed in camera b. ``motion_valid = valid``: the position of a material point is known at every time,
  also when it is hidden in view b or outside its image.
- ``flow_target`` p̄_vt — the projection of P̄_vt by camera b. ``flow_valid`` only where that pixel is inside image
  b, in front of camera b *and actually shows that point*: a ray is cast through p̄_vt at τb and its first hit must
  lie at the point's depth (relative tolerance ``VISIBILITY_TOLERANCE``). This occlusion test is exact — it asks the
  scene itself, not a depth map at pixel resolution — so a point hidden behind a nearer surface (or behind a moving
  object that crossed in front of it) never gets a 2D target, the convention of optical-flow datasets with
  occlusion masks.

**Static scenes.** The paper trains on static and dynamic data (Eq. 15 weights them differently). A static pair
replaces every object's motion by ``FrozenMotion``: the object stays at its placement at one random clip time, so
static scenes are as varied as dynamic ones and ``P̄_vt = T̄·P̄`` holds on every pixel.

**Cameras.** Each view looks at the preset's point of interest (plus a small random aim offset) from a random
azimuth, elevation and distance; view 2 is view 1's orbit position moved by at most ``max_view_change`` degrees, so
the views overlap. Each view draws its own horizontal field of view from ``fov_range`` (principal point at the image
centre): the focal length varies across and within pairs so that a network must estimate it (Eq. 7) rather than
memorise it.

Cost: a 64×64 pair with ``supersample=2`` (two views, each with a supersampled RGB render and two geometry casts)
took 0.14–0.21 s on one thread of a 2-core machine running another job, and 0.3–0.4 s when four jobs shared it.
Rendering issues many small tensor ops, so one torch thread per worker is best (DataLoader workers default to one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from fourd_ns.feedforward.pair_types import PairSample, ViewTargets
from fourd_ns.synthetic.camera import PinholeCamera, camera_rays, look_at, pixel_centres, project
from fourd_ns.synthetic.motion import Motion, Placement
from fourd_ns.synthetic.presets import PRESETS
from fourd_ns.synthetic.render import area_downsample, render_rgb
from fourd_ns.synthetic.scene import Hits, Scene, cast_rays, material_points_at

VISIBILITY_TOLERANCE = 1e-3
"""A point counts as seen by a camera when the first hit along its ray is within this fraction of its depth. Float32
ray casting agrees to ~1e-5 even at grazing angles; the nearest occluders in the presets (a poster 5 mm in front of
its wall, seen from ~2.5 m) are 2e-3 in front."""
PATCH_SIZE = 16
"""Image sides must be multiples of the network's patch size."""


@dataclass(frozen=True, eq=False)
class FrozenMotion(Motion):
    """A motion stopped at one clip time: every time sees the wrapped motion's map at ``frozen_at``."""

    motion: Motion
    frozen_at: float
    dynamic = False

    @property
    def placement(self) -> Placement:
        return self.motion.placement

    def affine(self, tau: float) -> tuple[np.ndarray, np.ndarray]:
        return self.motion.affine(self.frozen_at)


def frozen_scene(scene: Scene, tau: float) -> Scene:
    """The scene with every moving object stopped where it is at clip time ``tau`` (a static scene)."""
    objects = tuple(
        replace(obj, motion=FrozenMotion(obj.motion, tau)) if obj.motion.dynamic else obj for obj in scene.objects
    )
    return replace(scene, objects=objects)


def scene_is_dynamic(scene: Scene) -> bool:
    return any(obj.motion.dynamic for obj in scene.objects)


def intrinsics_matrix(camera: PinholeCamera) -> Float[Tensor, "3 3"]:
    cx, cy = camera.principal_point
    return torch.tensor([[camera.focal, 0.0, cx], [0.0, camera.focal, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)


def relative_pose(camera_a: PinholeCamera, camera_b: PinholeCamera) -> Float[Tensor, "4 4"]:
    """T with X_b = T · X_a for camera-space points (computed in float64)."""
    r_a, r_b = np.asarray(camera_a.rotation, np.float64), np.asarray(camera_b.rotation, np.float64)
    pose = np.eye(4)
    pose[:3, :3] = r_b @ r_a.T
    pose[:3, 3] = r_b @ (np.asarray(camera_a.position, np.float64) - np.asarray(camera_b.position, np.float64))
    return torch.as_tensor(pose, dtype=torch.float32)


def camera_to_world(camera: PinholeCamera) -> Float[Tensor, "4 4"]:
    """The camera's 4×4 camera-to-world matrix (OpenCV axes)."""
    pose = np.eye(4)
    pose[:3, :3] = np.asarray(camera.rotation, np.float64).T
    pose[:3, 3] = camera.position
    return torch.as_tensor(pose, dtype=torch.float32)


def world_to_camera(camera: PinholeCamera, world: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
    rotation = torch.as_tensor(camera.rotation, dtype=world.dtype)
    return (world - torch.as_tensor(camera.position, dtype=world.dtype)) @ rotation.T


def cast_pixel_centres(scene: Scene, camera: PinholeCamera, tau: float) -> Hits:
    """Nearest hits of the rays through the H·W pixel centres of ``camera`` (row-major) at clip time ``tau``."""
    uv = pixel_centres(camera.width, camera.height).reshape(-1, 2)
    origins, dirs = camera_rays(camera, uv)
    return cast_rays(scene, origins, dirs, tau)


def visible_from(
    scene: Scene, camera: PinholeCamera, tau: float, world: Float[Tensor, "N 3"]
) -> tuple[Float[Tensor, "N 2"], Bool[Tensor, "N"]]:
    """Pixel positions of world points in ``camera`` and whether the camera sees each point at ``tau``.

    Seen = in front of the camera, inside the image, and the first surface along the ray through that pixel position
    is the point itself (within ``VISIBILITY_TOLERANCE``).
    """
    uv, depth = project(camera, world)
    inside = (
        (depth > 0)
        & torch.isfinite(uv).all(dim=1)
        & (uv[:, 0] >= 0)
        & (uv[:, 0] <= camera.width)
        & (uv[:, 1] >= 0)
        & (uv[:, 1] <= camera.height)
    )
    visible = torch.zeros_like(inside)
    candidates = inside.nonzero()[:, 0]
    if len(candidates):
        origins, dirs = camera_rays(camera, uv[candidates])
        first_hit = cast_rays(scene, origins, dirs, tau).depth
        z = depth[candidates]
        visible[candidates] = (first_hit - z).abs() <= VISIBILITY_TOLERANCE * z
    return uv, visible


def render_view_targets(
    scene: Scene, camera: PinholeCamera, tau: float, other_camera: PinholeCamera, other_tau: float
) -> ViewTargets:
    """Exact ground truth of the view (``camera``, ``tau``) towards the other view (see the module docstring)."""
    h, w = camera.height, camera.width
    hits = cast_pixel_centres(scene, camera, tau)
    valid = torch.isfinite(hits.depth)
    world_other = material_points_at(scene, hits, other_tau)
    uv_other, seen = visible_from(scene, other_camera, other_tau, world_other)
    known = valid[:, None]
    zeros3 = torch.zeros(1, 3)
    return ViewTargets(
        points=torch.where(known, world_to_camera(camera, hits.world), zeros3).reshape(h, w, 3),
        points_other=torch.where(known, world_to_camera(other_camera, world_other), zeros3).reshape(h, w, 3),
        valid=valid.reshape(h, w),
        motion_valid=valid.reshape(h, w),
        flow_target=torch.where(known & seen[:, None], uv_other, torch.zeros(1, 2)).reshape(h, w, 2),
        flow_valid=(valid & seen).reshape(h, w),
    )


def render_image(scene: Scene, camera: PinholeCamera, tau: float, supersample: int) -> Float[Tensor, "3 H W"]:
    """Antialiased RGB in [0, 1]: ``supersample``² stratified samples per pixel, area-averaged."""
    fine = render_rgb(scene, camera, tau, supersample)
    return area_downsample(fine, supersample).permute(2, 0, 1).contiguous()


@dataclass
class SyntheticPairSetup:
    """Everything a seed decides before rendering."""

    preset: str
    scene: Scene
    camera1: PinholeCamera
    camera2: PinholeCamera
    tau1: float
    tau2: float

    @property
    def dynamic(self) -> bool:
        return scene_is_dynamic(self.scene)


def render_pair(setup: SyntheticPairSetup, supersample: int = 2) -> PairSample:
    """Images and both views' exact ground truth of a pair."""
    s = setup
    return PairSample(
        image1=render_image(s.scene, s.camera1, s.tau1, supersample),
        image2=render_image(s.scene, s.camera2, s.tau2, supersample),
        intrinsics1=intrinsics_matrix(s.camera1),
        intrinsics2=intrinsics_matrix(s.camera2),
        pose_1to2=relative_pose(s.camera1, s.camera2),
        dynamic=torch.tensor(s.dynamic, dtype=torch.bool),
        targets1=render_view_targets(s.scene, s.camera1, s.tau1, s.camera2, s.tau2),
        targets2=render_view_targets(s.scene, s.camera2, s.tau2, s.camera1, s.tau1),
    )


def orbit_camera(
    target: np.ndarray,
    azimuth: float,
    elevation: float,
    distance: float,
    fov: float,
    width: int,
    height: int,
    aim_offset: np.ndarray | None = None,
) -> PinholeCamera:
    """A camera on a sphere around ``target`` looking at ``target + aim_offset``; angles in degrees.

    Azimuth 0 is on the −y side of the target (the presets' front), elevation is above the horizontal plane, ``fov``
    is the horizontal field of view; the principal point is the image centre.
    """
    az, el = math.radians(azimuth), math.radians(elevation)
    direction = np.array([math.sin(az) * math.cos(el), -math.cos(az) * math.cos(el), math.sin(el)])
    position = np.asarray(target, np.float64) + distance * direction
    aim = np.asarray(target, np.float64) + (0.0 if aim_offset is None else aim_offset)
    focal = 0.5 * width / math.tan(math.radians(fov) / 2)
    return PinholeCamera(look_at(position, aim), position, focal, (width / 2, height / 2), width, height)


@dataclass(frozen=True)
class SyntheticPairSource:
    """Image pairs of analytic scenes with exact Flow4R ground truth, each a pure function of a seed."""

    presets: tuple[str, ...] = ("random",)
    """Scene presets drawn uniformly: 'random' (a seeded random arrangement of 2–5 moving objects) and the
    NeRF-DS-like 'bell', 'cup', 'press' (fixed layouts, seeded textures)."""
    dynamic_fraction: float = 0.5
    """Share of pairs from dynamic scenes; the others freeze every object at one random time (static scenes)."""
    image_size: tuple[int, int] = (64, 64)
    """(height, width) in pixels; multiples of 16."""
    clip_frames: int = 48
    """Frames in the virtual clip that frame gaps refer to (the presets' motions span one clip)."""
    max_frame_gap: int = 12
    """Largest |i − j| between the two views' frames (0 = same time, a pure camera-motion pair). The paper pairs
    real frames up to 50 apart (under 2 s of video); the presets' motions run a full cycle per clip, so a quarter
    clip already moves objects a lot."""
    fov_range: tuple[float, float] = (45.0, 75.0)
    """Range of each view's horizontal field of view in degrees (varies the focal length)."""
    azimuth_range: float = 40.0
    """View 1's azimuth is the preset's azimuth ± this many degrees."""
    elevation_range: tuple[float, float] = (5.0, 40.0)
    """Range of camera elevations in degrees above the target."""
    distance_range: tuple[float, float] = (0.8, 1.25)
    """Range of camera distances as multiples of the preset's viewing distance."""
    max_view_change: float = 25.0
    """Largest azimuth change between the two views in degrees (half of it in elevation)."""
    aim_jitter: float = 0.05
    """Standard deviation of each view's aim offset from the target, as a fraction of the viewing distance."""
    supersample: int = 2
    """RGB samples per pixel side (antialiasing); geometry uses the pixel centres."""

    def __post_init__(self) -> None:
        unknown = [p for p in self.presets if p not in PRESETS]
        if not self.presets or unknown:
            raise ValueError(
                f"SyntheticPairSource.presets: unknown {unknown or 'empty list'}; choose from {sorted(PRESETS)}"
            )
        if any(side <= 0 or side % PATCH_SIZE for side in self.image_size):
            raise ValueError(
                f"SyntheticPairSource.image_size {self.image_size}: height and width must be positive multiples of "
                f"{PATCH_SIZE} (the network's patch size)"
            )
        if not 0.0 <= self.dynamic_fraction <= 1.0:
            raise ValueError(f"SyntheticPairSource.dynamic_fraction must be in [0, 1], got {self.dynamic_fraction}")
        if self.clip_frames < 2 or not 0 <= self.max_frame_gap < self.clip_frames:
            raise ValueError(
                f"SyntheticPairSource: need clip_frames >= 2 and 0 <= max_frame_gap < clip_frames, got "
                f"clip_frames={self.clip_frames}, max_frame_gap={self.max_frame_gap}"
            )
        if self.supersample < 1:
            raise ValueError(f"SyntheticPairSource.supersample must be >= 1, got {self.supersample}")

    def setup(self, seed: int) -> SyntheticPairSetup:
        """The scene, cameras and times that ``seed`` selects (deterministic)."""
        scene_seq, choice_seq = np.random.SeedSequence(seed).spawn(2)
        rng = np.random.default_rng(choice_seq)
        preset = self.presets[int(rng.integers(len(self.presets)))]
        scene, spec = PRESETS[preset](np.random.default_rng(scene_seq))
        last = self.clip_frames - 1
        frame1 = int(rng.integers(self.clip_frames))
        frame2 = int(rng.integers(max(0, frame1 - self.max_frame_gap), min(last, frame1 + self.max_frame_gap) + 1))
        if rng.random() >= self.dynamic_fraction:
            scene = frozen_scene(scene, float(rng.uniform(0.0, 1.0)))

        height, width = self.image_size
        target = np.asarray(spec.target, np.float64)
        azimuth = spec.azimuth + rng.uniform(-self.azimuth_range, self.azimuth_range)
        elevation = rng.uniform(*self.elevation_range)
        cameras = []
        for view in range(2):
            if view == 1:
                azimuth += rng.uniform(-self.max_view_change, self.max_view_change)
                elevation = np.clip(
                    elevation + rng.uniform(-self.max_view_change / 2, self.max_view_change / 2),
                    *self.elevation_range,
                )
            distance = spec.distance * rng.uniform(*self.distance_range)
            aim = rng.normal(0.0, self.aim_jitter * distance, 3)
            fov = rng.uniform(*self.fov_range)
            cameras.append(orbit_camera(target, azimuth, float(elevation), distance, fov, width, height, aim))
        return SyntheticPairSetup(preset, scene, cameras[0], cameras[1], frame1 / last, frame2 / last)

    def pair(self, seed: int) -> PairSample:
        """The pair of ``seed``: same seed, same images and ground truth."""
        return render_pair(self.setup(seed), self.supersample)
