"""Training pairs for Flow4R / Flow3r as torch datasets, and their collation into a ``PairBatch``.

- ``SyntheticPairDataset``: index → seed → ``SyntheticPairSource.pair`` (exact ground truth, rendered on the fly).
- ``SequencePairDataset``: pairs of frames (i, j), ``min_gap ≤ j − i ≤ max_gap``, from folders in the on-disk
  sequence format (``sequence_format.py``, ``docs/sequence_format.md``); view 1 is the earlier frame.
- ``collate_pairs``: a list of ``PairSample`` → ``PairBatch`` with images in [−1, 1].

**Resolution.** Frames are scaled uniformly to cover the target size and centre-cropped (no distortion of the
aspect ratio); intrinsics, flow vectors and track pixels follow exactly, since a scale of the pixel grid maps pixel
edges to pixel edges (u' = s·u − crop offset). Images are resampled bilinearly with antialiasing; depth, flow and
masks by nearest neighbour (``nearest-exact``: the source pixel under each target pixel centre), because averaging
across an edge creates values that belong to no surface.

**Ground truth of view a (frame i) towards view b (frame j)**, with T̄ = world→cam_b · cam_a→world; each source
below overwrites the previous ones where it applies, from the least to the most exact:

1. *Tracks* (any gap). Each track visible in frame i lands on the pixel that contains it; it is kept if its depth
   agrees with that pixel's depth within ``track_depth_tolerance`` (it is the surface the pixel sees). P̄_vt is the
   track's 3D position at frame j in camera j; p̄_vt its pixel in frame j where it is visible there. A track lies up
   to half a pixel from the centre of its pixel; that offset is not corrected (a relative 3D error of about half a
   pixel's footprint, ~1 % at 64 px in the synthetic scenes).
2. *Dense flow* (adjacent frames, |i − j| = 1, when the sequence has flow from i to j). The target pixel is
   q = p + flow (``flow_target``), kept (``flow_valid``) where finite, inside image b and, when the reverse flow
   j → i exists, forward–backward consistent: |f + b(q)|² < 0.01 (|f|² + |b(q)|²) + 0.05 px². That is the check of
   Sundaram et al. (2010) with a ten times smaller absolute term, because dataset flow is ground truth rather than
   an estimate: an occluded pixel fails the check only if its occluder's flow differs from its own, and between
   adjacent frames a static occluder's parallax is often below the paper's 0.7 px — such pixels would be given the
   occluder's depth (50 % errors on the synthetic scenes, which the stricter term removes).
   P̄_vt = depth_j(q)·K_j⁻¹(q, 1) with depth_j(q) from ``interpolate_depth``: inverse depth interpolated
   bilinearly (exact on planes, where depth itself is not linear in the pixel position), and only where the four
   depth pixels around q are valid and within ``depth_edge_tolerance`` of each other, so that a q on a depth edge
   is dropped rather than given a blend of foreground and background. The interpolated depth lies between its four
   neighbours, so on a smooth surface its relative error is below that tolerance. Without a reverse flow, occluded
   pixels cannot be detected: give ``flow_backward/`` (or tracks) to avoid supervising them.
3. *Rigid motion* for pixels known to be static: every valid pixel of a static sequence, or the pixels outside the
   dynamic mask of a dynamic sequence with ``masks/``. P̄_vt = T̄·P̄ (``motion_valid``), p̄_vt = its projection by
   K_j, ``flow_valid`` where that projection is inside image j and not occluded (``unoccluded``: frame j's depth
   there, interpolated as above, is not in front of the point by more than ``occlusion_tolerance``).

A dynamic sequence with neither masks, tracks nor flow still supervises P̄ (Eq. 10) and, through T̄, the rigid
motion term weighted by the predicted W (Eq. 14–15).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, UInt8
from torch import Tensor
from torch.utils.data import Dataset

from fourd_ns.feedforward.flow4r_geometry import pixel_grid, transform_points, unproject_depth
from fourd_ns.feedforward.pair_types import PairBatch, PairSample, ViewTargets
from fourd_ns.feedforward.sequence_format import Sequence, read_sequence
from fourd_ns.feedforward.synthetic_pairs import PATCH_SIZE, SyntheticPairSource
from fourd_ns.geometry.pinhole import project_camera_points, unpack_intrinsics, unproject_pixels


def check_image_size(image_size: tuple[int, int], setting: str) -> None:
    if len(image_size) != 2 or any(side <= 0 or side % PATCH_SIZE for side in image_size):
        raise ValueError(
            f"{setting} {tuple(image_size)}: (height, width) must be positive multiples of {PATCH_SIZE} "
            f"(the network's patch size)"
        )


@dataclass(frozen=True)
class CropResize:
    """Uniform scaling of a ``source_size`` image to cover ``target_size``, then a centre crop; sizes are (H, W)."""

    source_size: tuple[int, int]
    target_size: tuple[int, int]

    @property
    def resized_size(self) -> tuple[int, int]:
        (h0, w0), (h, w) = self.source_size, self.target_size
        scale = max(h / h0, w / w0)
        return max(h, round(h0 * scale)), max(w, round(w0 * scale))

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): the exact per-axis factors of the resize (rounding makes them differ slightly)."""
        (h0, w0), (h1, w1) = self.source_size, self.resized_size
        return w1 / w0, h1 / h0

    @property
    def offset(self) -> tuple[int, int]:
        """(left, top) of the crop in the resized image."""
        (h1, w1), (h, w) = self.resized_size, self.target_size
        return (w1 - w) // 2, (h1 - h) // 2

    def _crop(self, x: Tensor) -> Tensor:
        (left, top), (h, w) = self.offset, self.target_size
        return x[..., top : top + h, left : left + w]

    def image(self, image: UInt8[Tensor, "H0 W0 3"]) -> Float[Tensor, "3 H W"]:
        """RGB in [0, 1], resampled bilinearly with antialiasing."""
        x = image.permute(2, 0, 1).float() / 255.0
        if self.resized_size != self.source_size:
            x = F.interpolate(x[None], size=self.resized_size, mode="bilinear", antialias=True, align_corners=False)[0]
        return self._crop(x).clamp(0.0, 1.0).contiguous()

    def nearest(self, field: Tensor) -> Tensor:
        """A per-pixel field [H0, W0, *C] (any dtype) resampled by nearest neighbour to [H, W, *C]."""
        x = field.reshape(*self.source_size, -1).permute(2, 0, 1)
        if self.resized_size != self.source_size:
            x = F.interpolate(x[None].double(), size=self.resized_size, mode="nearest-exact")[0].to(field.dtype)
        x = self._crop(x).permute(1, 2, 0)
        return x.reshape(*self.target_size, *field.shape[2:]).contiguous()

    def intrinsics(self, intrinsics: Float[Tensor, "3 3"]) -> Float[Tensor, "3 3"]:
        (sx, sy), (left, top) = self.scale, self.offset
        k = intrinsics.clone()
        k[0] *= sx
        k[1] *= sy
        k[0, 2] -= left
        k[1, 2] -= top
        return k

    def pixels(self, pixels: Float[Tensor, "*N 2"]) -> Float[Tensor, "*N 2"]:
        (sx, sy), (left, top) = self.scale, self.offset
        return pixels * pixels.new_tensor([sx, sy]) - pixels.new_tensor([left, top])

    def flow(self, flow: Float[Tensor, "H0 W0 2"]) -> Float[Tensor, "H W 2"]:
        """Flow vectors on the target grid (nearest sampling, vectors scaled by (sx, sy))."""
        sx, sy = self.scale
        return self.nearest(flow) * flow.new_tensor([sx, sy])


def project_pinhole(
    points: Float[Tensor, "*N 3"], intrinsics: Float[Tensor, "3 3"]
) -> tuple[Float[Tensor, "*N 2"], Float[Tensor, "*N"]]:
    """Pixel positions K·(X/Z, Y/Z, 1) and depths Z (points at Z ≤ 0 get finite but meaningless pixels: only
    |Z| ≤ 1e-12 is guarded, so callers test Z themselves)."""
    fx, fy, cx, cy = unpack_intrinsics(intrinsics)
    projection = project_camera_points(points, fx, fy, cx, cy, min_depth=1e-12, depth_guard="nonzero")
    return projection.pixels, projection.depth


def inside_image(pixels: Float[Tensor, "*N 2"], height: int, width: int) -> Bool[Tensor, "*N"]:
    u, v = pixels[..., 0], pixels[..., 1]
    return torch.isfinite(pixels).all(dim=-1) & (u >= 0) & (u <= width) & (v >= 0) & (v <= height)


def sample_bilinear(field: Float[Tensor, "H W C"], pixels: Float[Tensor, "N 2"]) -> Float[Tensor, "N C"]:
    """Bilinear samples at pixel positions (pixel centres at integer + 0.5), border values outside."""
    height, width = field.shape[:2]
    grid = torch.stack([2 * pixels[:, 0] / width - 1, 2 * pixels[:, 1] / height - 1], dim=-1)
    grid = torch.nan_to_num(grid, nan=-2.0).clamp(-2.0, 2.0)
    sampled = F.grid_sample(
        field.permute(2, 0, 1)[None], grid[None, None], mode="bilinear", padding_mode="border", align_corners=False
    )
    return sampled[0, :, 0].T


def _corner_depths(
    depth: Float[Tensor, "H W"], pixels: Float[Tensor, "N 2"]
) -> tuple[Float[Tensor, "N 4"], Float[Tensor, "N 2"], Bool[Tensor, "N"]]:
    """Depths of the four pixel centres around each position (top-left, top-right, bottom-left, bottom-right), the
    position's fractional offset from the top-left centre, and whether all four centres exist."""
    height, width = depth.shape
    x, y = pixels[:, 0] - 0.5, pixels[:, 1] - 0.5
    inside = torch.isfinite(x) & torch.isfinite(y) & (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    x0 = torch.where(inside, x, torch.zeros_like(x)).floor().long().clamp(0, max(width - 2, 0))
    y0 = torch.where(inside, y, torch.zeros_like(y)).floor().long().clamp(0, max(height - 2, 0))
    x1, y1 = (x0 + 1).clamp(max=width - 1), (y0 + 1).clamp(max=height - 1)
    corners = torch.stack([depth[y0, x0], depth[y0, x1], depth[y1, x0], depth[y1, x1]], dim=-1)
    fraction = torch.stack([x - x0, y - y0], dim=-1)
    return corners, torch.where(inside[:, None], fraction, torch.zeros_like(fraction)), inside


def _blend_inverse_depth(corners: Float[Tensor, "N 4"], fraction: Float[Tensor, "N 2"]) -> Float[Tensor, "N"]:
    """Bilinear interpolation of inverse depth (exact on planes, where depth is not linear in the pixel position)."""
    wx, wy = fraction[:, 0], fraction[:, 1]
    inverse = 1.0 / corners.clamp_min(1e-12)
    top = inverse[:, 0] * (1 - wx) + inverse[:, 1] * wx
    bottom = inverse[:, 2] * (1 - wx) + inverse[:, 3] * wx
    return 1.0 / (top * (1 - wy) + bottom * wy)


def interpolate_depth(
    depth: Float[Tensor, "H W"], pixels: Float[Tensor, "N 2"], edge_tolerance: float
) -> tuple[Float[Tensor, "N"], Bool[Tensor, "N"]]:
    """Depth at continuous pixel positions by bilinear interpolation of inverse depth, and where it is trustworthy:
    the four surrounding pixel centres exist, are valid (> 0) and their depths differ by at most ``edge_tolerance``
    (relative), i.e. the position is not on a depth edge."""
    corners, fraction, ok = _corner_depths(depth, pixels)
    low, high = corners.min(dim=-1).values, corners.max(dim=-1).values
    ok = ok & (low > 0) & (high <= low * (1 + edge_tolerance))
    interpolated = _blend_inverse_depth(corners, fraction)
    return torch.where(ok, interpolated, torch.zeros_like(interpolated)), ok


def unoccluded(
    depth: Float[Tensor, "H W"], pixels: Float[Tensor, "N 2"], z: Float[Tensor, "N"], tolerance: float
) -> Bool[Tensor, "N"]:
    """Whether points at depth ``z`` seen at ``pixels`` are not hidden in a view with this depth map: ``z`` is at most
    ``(1 + tolerance)`` times the view's depth there, interpolated like ``interpolate_depth`` from the four
    surrounding pixel centres (all must be valid).

    Next to an occluding contour the interpolation blends the nearer surface in, so background points within a pixel
    of a foreground edge count as hidden: losing supervision there is cheaper than supervising a point with the
    motion of its occluder. Positions in the outer half-pixel border have no four neighbours and count as hidden.
    """
    corners, fraction, inside = _corner_depths(depth, pixels)
    seen_depth = _blend_inverse_depth(corners, fraction)
    return inside & (corners > 0).all(dim=-1) & (z <= seen_depth * (1 + tolerance))


def forward_backward_consistent(
    forward: Float[Tensor, "H W 2"],
    backward: Float[Tensor, "H W 2"],
    relative: float = 0.01,
    absolute: float = 0.5,
) -> Bool[Tensor, "H W"]:
    """The forward–backward check of Sundaram et al. (2010) of each pixel's forward flow against the backward flow
    at its target (bilinear): |f + b(p + f)|² < relative·(|f|² + |b(p + f)|²) + absolute (squared pixels); False
    where either flow is non-finite. The defaults are the paper's, meant for estimated flow."""
    height, width = forward.shape[:2]
    target = pixel_grid(height, width, dtype=forward.dtype) + forward
    back = sample_bilinear(backward, target.reshape(-1, 2)).reshape(height, width, 2)
    mismatch = (forward + back).square().sum(-1)
    bound = relative * (forward.square().sum(-1) + back.square().sum(-1)) + absolute
    return mismatch < bound  # NaN (unknown flow on either side) compares False


@dataclass
class _Frame:
    """One frame at the target resolution."""

    index: int
    image: Float[Tensor, "3 H W"]
    depth: Float[Tensor, "H W"]
    intrinsics: Float[Tensor, "3 3"]
    camera_to_world: Float[Tensor, "4 4"]
    world_to_camera: Float[Tensor, "4 4"]
    dynamic_mask: Optional[Bool[Tensor, "H W"]]


def _world_to_camera(camera_to_world: Float[Tensor, "4 4"]) -> Float[Tensor, "4 4"]:
    rotation, centre = camera_to_world[:3, :3], camera_to_world[:3, 3]
    pose = torch.eye(4, dtype=camera_to_world.dtype)
    pose[:3, :3] = rotation.T
    pose[:3, 3] = -rotation.T @ centre
    return pose


def _transform(pose: Float[Tensor, "4 4"], points: Float[Tensor, "*N 3"]) -> Float[Tensor, "*N 3"]:
    return transform_points(pose[None], points[None])[0]


class FramePairIndex:
    """All frame pairs (i, j) with ``min_gap ≤ j − i ≤ max_gap`` of several videos, numbered consecutively (video by
    video, then by first frame, then by gap), without listing them: index → (video, i, j) by two binary searches."""

    def __init__(self, num_frames: list[int], min_gap: int, max_gap: int, owner: str) -> None:
        if not 1 <= min_gap <= max_gap:
            raise ValueError(f"{owner}: need 1 <= min_gap <= max_gap, got min_gap={min_gap}, max_gap={max_gap}")
        self.min_gap, self.max_gap = min_gap, max_gap
        # Frame i of a T-frame video has max(0, min(max_gap, T − 1 − i) − min_gap + 1) partners j > i.
        self._ends = [
            np.cumsum([max(0, min(max_gap, count - 1 - i) - min_gap + 1) for i in range(count)]) for count in num_frames
        ]
        self._starts = np.cumsum([0] + [int(ends[-1]) if len(ends) else 0 for ends in self._ends])
        if self._starts[-1] == 0:
            raise ValueError(
                f"{owner}: no frame pairs with {min_gap} <= gap <= {max_gap} in videos of {num_frames} frames; "
                f"add longer videos or lower min_gap"
            )

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> tuple[int, int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"pair index {index} out of range for {len(self)} pairs")
        video = int(np.searchsorted(self._starts, index, side="right")) - 1
        local = index - int(self._starts[video])
        ends = self._ends[video]
        i = int(np.searchsorted(ends, local, side="right"))
        offset = local - (int(ends[i - 1]) if i > 0 else 0)
        return video, i, i + self.min_gap + offset


class SequencePairDataset(Dataset):
    """Frame pairs of on-disk sequences with the ground truth described in the module docstring."""

    def __init__(
        self,
        folders: Iterable[str | Path],
        image_size: tuple[int, int] = (224, 224),
        max_gap: int = 50,
        min_gap: int = 1,
        depth_edge_tolerance: float = 0.05,
        occlusion_tolerance: float = 0.03,
        track_depth_tolerance: float = 0.05,
        flow_check_relative: float = 0.01,
        flow_check_absolute: float = 0.05,
    ) -> None:
        """``folders``: sequence folders; ``image_size``: (H, W) of the pairs, multiples of 16; pairs are all (i, j)
        with ``min_gap ≤ j − i ≤ max_gap`` (paper: neighbours within 50 frames). Tolerances are relative depths (see
        the module docstring), the flow check's thresholds those of ``forward_backward_consistent``."""
        check_image_size(image_size, "SequencePairDataset.image_size")
        self.sequences: list[Sequence] = [read_sequence(folder) for folder in folders]
        self.pairs = FramePairIndex([s.num_frames for s in self.sequences], min_gap, max_gap, "SequencePairDataset")
        self.image_size = tuple(image_size)
        self.depth_edge_tolerance = depth_edge_tolerance
        self.occlusion_tolerance = occlusion_tolerance
        self.track_depth_tolerance = track_depth_tolerance
        self.flow_check = (flow_check_relative, flow_check_absolute)

    def __len__(self) -> int:
        return len(self.pairs)

    def pair_frames(self, index: int) -> tuple[int, int, int]:
        """(sequence, frame i, frame j) of pair ``index``."""
        return self.pairs[index]

    def __getitem__(self, index: int) -> PairSample:
        s, i, j = self.pair_frames(index)
        sequence = self.sequences[s]
        resize = CropResize(sequence.image_size, self.image_size)
        frame_i, frame_j = self._frame(sequence, resize, i), self._frame(sequence, resize, j)
        return PairSample(
            image1=frame_i.image,
            image2=frame_j.image,
            intrinsics1=frame_i.intrinsics,
            intrinsics2=frame_j.intrinsics,
            pose_1to2=frame_j.world_to_camera @ frame_i.camera_to_world,
            dynamic=torch.tensor(sequence.dynamic, dtype=torch.bool),
            targets1=self._view_targets(sequence, resize, frame_i, frame_j),
            targets2=self._view_targets(sequence, resize, frame_j, frame_i),
        )

    def _frame(self, sequence: Sequence, resize: CropResize, t: int) -> _Frame:
        return _Frame(
            index=t,
            image=resize.image(sequence.image(t)),
            depth=resize.nearest(sequence.depth(t)),
            intrinsics=resize.intrinsics(sequence.intrinsics[t]),
            camera_to_world=sequence.camera_to_world[t],
            world_to_camera=_world_to_camera(sequence.camera_to_world[t]),
            dynamic_mask=resize.nearest(sequence.mask(t)) if sequence.has_masks else None,
        )

    def _flow_between(self, sequence: Sequence, resize: CropResize, a: int, b: int) -> Optional[Tensor]:
        """Flow from frame a to the adjacent frame b at the target resolution, if the sequence has it."""
        if b == a + 1 and sequence.has_flow:
            return resize.flow(sequence.flow(a))
        if b == a - 1 and sequence.has_backward_flow:
            return resize.flow(sequence.backward_flow(a))
        return None

    def _view_targets(self, sequence: Sequence, resize: CropResize, view: _Frame, other: _Frame) -> ViewTargets:
        height, width = self.image_size
        valid = view.depth > 0
        points = torch.where(valid[..., None], unproject_depth(view.depth[None], view.intrinsics[None])[0], 0.0)
        points_other = torch.zeros(height, width, 3)
        motion_valid = torch.zeros(height, width, dtype=torch.bool)
        flow_target = torch.zeros(height, width, 2)
        flow_valid = torch.zeros(height, width, dtype=torch.bool)

        if sequence.has_tracks:
            self._apply_tracks(sequence, resize, view, other, points_other, motion_valid, flow_target, flow_valid)

        flow = self._flow_between(sequence, resize, view.index, other.index)
        if flow is not None:
            target = pixel_grid(height, width) + flow
            flow_ok = torch.isfinite(flow).all(-1) & inside_image(target, height, width)
            reverse = self._flow_between(sequence, resize, other.index, view.index)
            if reverse is not None:
                flow_ok &= forward_backward_consistent(flow, reverse, *self.flow_check)
            depth, depth_ok = interpolate_depth(other.depth, target.reshape(-1, 2), self.depth_edge_tolerance)
            moved = unproject_pixels(target.reshape(-1, 2), depth, *unpack_intrinsics(other.intrinsics))
            moved = moved.reshape(height, width, 3)
            motion_ok = flow_ok & depth_ok.reshape(height, width)
            points_other = torch.where(motion_ok[..., None], moved, points_other)
            motion_valid |= motion_ok
            flow_target = torch.where(flow_ok[..., None], target, flow_target)
            flow_valid |= flow_ok

        if not sequence.dynamic:
            static = valid
        elif view.dynamic_mask is not None:
            static = valid & ~view.dynamic_mask
        else:
            static = None
        if static is not None:
            pose = other.world_to_camera @ view.camera_to_world
            rigid = _transform(pose, points)
            pixels, z = project_pinhole(rigid, other.intrinsics)
            visible = unoccluded(other.depth, pixels.reshape(-1, 2), z.reshape(-1), self.occlusion_tolerance)
            seen = static & (z > 0) & visible.reshape(height, width)
            points_other = torch.where(static[..., None], rigid, points_other)
            motion_valid |= static
            flow_target = torch.where(static[..., None], pixels, flow_target)
            flow_valid = torch.where(static, seen, flow_valid)
        flow_target = torch.where(flow_valid[..., None], flow_target, 0.0)
        points_other = torch.where(motion_valid[..., None], points_other, 0.0)
        return ViewTargets(points, points_other, valid, motion_valid, flow_target, flow_valid)

    def _apply_tracks(
        self,
        sequence: Sequence,
        resize: CropResize,
        view: _Frame,
        other: _Frame,
        points_other: Tensor,
        motion_valid: Tensor,
        flow_target: Tensor,
        flow_valid: Tensor,
    ) -> None:
        """Write track supervision into the given maps in place (see the module docstring)."""
        height, width = self.image_size
        tracks = sequence.tracks()
        a, b = view.index, other.index
        in_view = _transform(view.world_to_camera, tracks.points_world[:, a])
        in_other = _transform(other.world_to_camera, tracks.points_world[:, b])
        if tracks.pixels is None:
            pixels_view, _ = project_pinhole(in_view, view.intrinsics)
            pixels_other, _ = project_pinhole(in_other, other.intrinsics)
        else:
            pixels_view, pixels_other = resize.pixels(tracks.pixels[:, a]), resize.pixels(tracks.pixels[:, b])
        usable = tracks.visible[:, a] & inside_image(pixels_view, height, width) & (in_view[:, 2] > 0)
        col = torch.nan_to_num(pixels_view[:, 0]).floor().long().clamp(0, width - 1)
        row = torch.nan_to_num(pixels_view[:, 1]).floor().long().clamp(0, height - 1)
        depth = view.depth[row, col]
        usable &= (depth > 0) & ((in_view[:, 2] - depth).abs() <= self.track_depth_tolerance * depth)
        row, col = row[usable], col[usable]
        points_other[row, col] = in_other[usable]
        motion_valid[row, col] = True
        seen = (tracks.visible[:, b] & inside_image(pixels_other, height, width) & (in_other[:, 2] > 0))[usable]
        flow_target[row, col] = torch.where(seen[:, None], pixels_other[usable], flow_target[row, col])
        flow_valid[row, col] = seen


class SyntheticPairDataset(Dataset):
    """``length`` synthetic pairs: item k is ``source.pair(first_seed + k)`` (deterministic, nothing on disk).

    Give training and validation sets disjoint seed ranges through ``first_seed``.
    """

    def __init__(self, source: SyntheticPairSource, length: int, first_seed: int = 0) -> None:
        if length < 1:
            raise ValueError(f"SyntheticPairDataset: length must be at least 1, got {length}")
        self.source, self.length, self.first_seed = source, length, first_seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> PairSample:
        if not 0 <= index < self.length:
            raise IndexError(f"pair index {index} out of range for {self.length} pairs")
        return self.source.pair(self.first_seed + index)


def _stack(items: list):
    """Stack same-class dataclasses field by field (tensors, nested dataclasses) along a new leading axis."""
    columns = {f.name: [getattr(item, f.name) for item in items] for f in fields(items[0])}
    return replace(
        items[0],
        **{
            name: torch.stack(column) if isinstance(column[0], Tensor) else _stack(column)
            for name, column in columns.items()
        },
    )


def collate_pairs(items: list[PairSample]) -> PairBatch:
    """Stack pair samples into a ``PairBatch`` (images mapped from [0, 1] to [−1, 1]); all must share one size."""
    if not items:
        raise ValueError("collate_pairs: got no pairs")
    sizes = {tuple(item.image1.shape[-2:]) for item in items} | {tuple(item.image2.shape[-2:]) for item in items}
    if len(sizes) > 1:
        raise ValueError(
            f"collate_pairs: pairs of different image sizes {sorted(sizes)} cannot share a batch; give every pair "
            f"source the same image_size"
        )
    batch = _stack(items)
    return replace(batch, image1=batch.image1 * 2.0 - 1.0, image2=batch.image2 * 2.0 - 1.0)
