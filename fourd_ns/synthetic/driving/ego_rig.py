"""The ego car's sensor rig, modelled on PandaSet's: three front cameras and a roof-mounted spinning LiDAR.

Ego frame: origin on the ground below the car's centre, x forward, y left, z up (the actor frame of
`trajectories`). Mount values were measured on PandaSet log 002 (camera poses relative to the front camera, image
timestamps relative to the LiDAR sweep timestamps, intrinsics of the 1920 x 1080 images):

- ``front_camera``: yaw 0°, pitch -0.12°, at (0.30, 0.00, 1.80) m; fx 1970.0, cx 970.0, cy 483.3; -0.0499 s.
- ``front_left_camera``: yaw +57.5°, pitch +1.80°, at (0.93, +0.65, 1.55) m; fx 929.8, cx 972.2, cy 508.0; -0.0606 s.
- ``front_right_camera``: yaw -58.1°, pitch -1.07°, at (0.93, -0.60, 1.57) m; fx 930.0, cx 965.1, cy 463.4;
  -0.0391 s.

Yaw is to the left (counter-clockwise seen from above). Images of W x H pixels get fx * W / 1920 as focal length
(fx = fy) and (cx * W / 1920, cy * H / 1080) as principal point. The time offset is the camera's capture time minus
the frame's LiDAR timestamp; cameras are global-shutter.

LiDAR sensor frame (Hesai's, like PandaSet's ``lidar/poses.json`` headings): x right, y forward, z up, mounted at
`LIDAR_POSITION` in the ego frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fourd_ns.synthetic.camera import PinholeCamera, look_at
from fourd_ns.synthetic.driving.trajectories import Trajectory

REFERENCE_SIZE = (1920, 1080)
"""Image size the mount intrinsics refer to (PandaSet's)."""
LIDAR_POSITION = (0.0, 0.0, 1.9)
"""LiDAR centre in the ego frame (m)."""
LIDAR_AXES = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
"""[3, 3] LiDAR sensor -> ego rotation (columns: sensor x = ego right, sensor y = ego forward, sensor z = up)."""


@dataclass(frozen=True)
class CameraMount:
    name: str
    """Folder name in the log, e.g. 'front_camera'."""
    position: tuple[float, float, float]
    """Camera centre in the ego frame (m)."""
    yaw_deg: float
    """Viewing direction, degrees to the left of the ego's forward axis."""
    pitch_deg: float
    """Degrees above the horizontal."""
    fx: float
    cx: float
    cy: float
    """Intrinsics in pixels of a REFERENCE_SIZE image."""
    time_offset: float
    """Capture time minus the frame's LiDAR timestamp (s)."""


PANDASET_FRONT_CAMERAS = {
    mount.name: mount
    for mount in (
        CameraMount("front_camera", (0.30, 0.0, 1.80), 0.0, -0.12, 1970.0131, 970.0002, 483.2988, -0.0499),
        CameraMount("front_left_camera", (0.93, 0.65, 1.55), 57.5, 1.80, 929.8429, 972.1794, 508.0057, -0.0606),
        CameraMount("front_right_camera", (0.93, -0.60, 1.57), -58.1, -1.07, 930.0407, 965.0525, 463.4161, -0.0391),
    )
}
"""PandaSet's three front cameras by folder name."""


def mounted_camera(mount: CameraMount, ego: Trajectory, t: float, width: int, height: int) -> PinholeCamera:
    """The camera of `mount` on the ego car at time t (s), for W x H images."""
    rotation, origin = ego.frame(t)
    yaw, pitch = math.radians(mount.yaw_deg), math.radians(mount.pitch_deg)
    forward = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    position = origin + rotation @ np.asarray(mount.position, np.float64)
    scale_x, scale_y = width / REFERENCE_SIZE[0], height / REFERENCE_SIZE[1]
    return PinholeCamera(
        rotation=look_at(position, position + rotation @ forward),
        position=position,
        focal=mount.fx * scale_x,
        principal_point=(mount.cx * scale_x, mount.cy * scale_y),
        width=width,
        height=height,
    )


def lidar_pose(ego: Trajectory, t: float) -> tuple[np.ndarray, np.ndarray]:
    """(rotation [3, 3], position [3]): LiDAR sensor -> world at time t (s)."""
    rotation, origin = ego.frame(t)
    return rotation @ LIDAR_AXES, origin + rotation @ np.asarray(LIDAR_POSITION, np.float64)
