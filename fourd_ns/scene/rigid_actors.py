"""Rigid actors: Gaussian sets that live in their box frame and are moved into the world by the box pose at a time.

Box frame and poses are those of `fourd_ns.sensors.actor_tracks` (box -> output world, +x along the actor's
heading). A pose at a time between two annotations interpolates them: slerp of the rotations, lerp of the
translations (the boxes of a 10 Hz log are close enough for constant angular and linear velocity in between).
Outside the annotated time range the actor is absent (None): a box is not extrapolated, because an actor that
entered or left the scene has no known pose there. ``hold_time`` relaxes this by holding the first / last pose for
that much normalised time beyond the range; it matters on real logs, where cuboids are annotated at the LiDAR
sweep time and a camera of the same frame may fire a little earlier or later (PandaSet's front cameras: 39–61 ms
before the sweep), so with ``hold_time = 0`` an actor annotated from the first frame on is missing from that
frame's images. `frame_hold_time` (one sweep interval) is the hold that keeps every camera of an annotated frame.

Moving a Gaussian set composes properly: means ``R p + t``, rotations ``q_world = q_box ⊗ q_local`` (the box
rotation applied after the Gaussian's own, so its covariance is ``R Σ Rᵀ``), scales unchanged.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import roma
import torch
from jaxtyping import Float
from torch import Tensor

from fourd_ns.geometry.rotations import quat_multiply, rotmat_to_quat
from fourd_ns.scene.gaussian_params import GaussianParams
from fourd_ns.sensors.actor_tracks import ActorTrack
from fourd_ns.sensors.lidar_sweeps import LidarSweeps


def actor_pose_at(track: ActorTrack, time: float, hold_time: float = 0.0) -> Optional[Float[Tensor, "4 4"]]:
    """Box -> world pose [4, 4] (float32, CPU) of ``track`` at normalised time ``time``, interpolated between the
    annotations around it; None when ``time`` is more than ``hold_time`` outside the annotated range."""
    times = track.times.astype(np.float64)
    if times.size == 0:
        return None
    if time < times[0] or time > times[-1]:
        nearest = 0 if time < times[0] else times.size - 1
        if abs(time - times[nearest]) > hold_time:
            return None
        return torch.from_numpy(track.poses[nearest].astype(np.float32))
    before = min(int(np.searchsorted(times, time, side="right")) - 1, times.size - 1)
    gap = times[before + 1] - times[before] if before + 1 < times.size else 0.0
    if time == times[before] or gap <= 0:
        return torch.from_numpy(track.poses[before].astype(np.float32))
    weight = (time - times[before]) / gap
    poses = torch.from_numpy(track.poses[before : before + 2].astype(np.float64))
    quats = roma.rotmat_to_unitquat(poses[:, :3, :3])
    rotation = roma.unitquat_to_rotmat(roma.unitquat_slerp(quats[0], quats[1], torch.tensor(weight)))
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = rotation
    pose[:3, 3] = (1.0 - weight) * poses[0, :3, 3] + weight * poses[1, :3, 3]
    return pose.float()


def frame_hold_time(lidar: LidarSweeps) -> float:
    """The median interval between consecutive sweeps (normalised time; 0 with fewer than two sweeps): a
    ``hold_time`` that keeps an actor in every camera image of the frames it is annotated in, at the cost of
    showing its first / last box up to one frame beyond its track."""
    if len(lidar) < 2:
        return 0.0
    return float(np.median(np.diff(np.sort(lidar.sweep_times.astype(np.float64)))))


def transform_gaussians(params: GaussianParams, box_to_world: Float[Tensor, "4 4"]) -> GaussianParams:
    """Gaussians given in a box frame, in the world of the rigid pose ``box_to_world`` (differentiable in
    ``params``; the pose is moved to their device and dtype)."""
    box_to_world = box_to_world.to(params.means)
    rotation, translation = box_to_world[:3, :3], box_to_world[:3, 3]
    box_quat = rotmat_to_quat(rotation).expand_as(params.quats)
    return GaussianParams(
        means=params.means @ rotation.T + translation,
        quats=quat_multiply(box_quat, params.quats),
        scales=params.scales,
        opacities=params.opacities,
        colors=params.colors,
    )
