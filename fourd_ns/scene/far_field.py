"""The distant region of a driving scene (sky, far buildings) as Gaussians on a latitude / longitude grid.

LiDAR sees nothing beyond ~100 m and nothing of the sky, so both G3R and Flux4D add Gaussians on a large sphere
around the scene. We follow G3R's supplement as a public reimplementation reads it: a cropped spherical "image" of
Gaussians, rows = latitudes, columns = longitudes, centred on the ego trajectory. Choices:

- **Centre and axes**: the given centre (the mean ego / LiDAR position of the source frames); latitude is measured
  from the world's horizontal plane (driving worlds are z up), longitude from +x towards +y.
- **Radius**: ``radius`` if given, else ``radius_factor`` × the scene extent (Flux4D: 4 × the length of the seed
  points' bounding box; G3R: 2048 m, which is ``radius = 2048 / metres_per_unit``).
- **Band**: latitudes ``latitude_range_deg`` (default G3R's +30° … −15°: the sky just above the horizon and far
  buildings, where a driving camera looks); ``(0, 90)`` gives Flux4D's upper hemisphere
  (`FLUX4D_HEMISPHERE`), as a regular grid instead of Flux4D's random points.
- **Grid**: ``num_latitudes`` × ``num_longitudes`` cell centres (G3R: 512 × 2048 training, 1024 × 4096 inference;
  the default is far smaller for CPU work). Gaussians are ordered row-major, row 0 the highest latitude, so a
  far-field state [Ns, C] reshapes to an image [num_latitudes, num_longitudes, C] for a 2D network.
- **Shape**: flat discs tangent to the sphere (local axes east, north, outward), tangential standard deviations
  ``overlap`` × the grid spacing along each axis (0.5: the midpoint between neighbours gets 61 % of each one's peak,
  so the band is covered without holes), the outward one ``thickness`` × the smaller of them.
- **Colour**: from the source images where a camera sees the cell centre (the first such image,
  `fourd_ns.scene.point_colours`), else grey 0.5; opacity ``opacity``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

from fourd_ns.geometry.rotations import rotmat_to_quat
from fourd_ns.scene.gaussian_params import GaussianParams
from fourd_ns.scene.point_colours import UNSEEN_GREY, colour_points
from nerfstudio.cameras.cameras import Cameras


@dataclass
class FarFieldConfig:
    """Where and how densely the far-field Gaussians sit (see the module docstring)."""

    num_latitudes: int = 64
    """Grid rows (latitudes)."""
    num_longitudes: int = 256
    """Grid columns (longitudes, covering 360°)."""
    latitude_range_deg: Tuple[float, float] = (-15.0, 30.0)
    """Lowest and highest latitude in degrees above the horizontal plane through the centre."""
    radius: Optional[float] = None
    """Sphere radius in output-world units; None uses radius_factor × the scene extent."""
    radius_factor: float = 4.0
    """Radius as a multiple of the scene extent (the length of the seed points' bounding-box diagonal)."""
    overlap: float = 0.5
    """Tangential standard deviation as a fraction of the grid spacing."""
    thickness: float = 0.1
    """Outward standard deviation as a fraction of the smaller tangential one."""
    opacity: float = 0.7
    """Initial opacity."""

    def __post_init__(self) -> None:
        low, high = self.latitude_range_deg
        if not -90.0 <= low < high <= 90.0:
            raise ValueError(f"latitude_range_deg must rise within [-90, 90]; got {self.latitude_range_deg}")
        if self.num_latitudes < 1 or self.num_longitudes < 1:
            raise ValueError(f"The far-field grid needs >= 1 row and column; got {self.num_latitudes}x"
                             f"{self.num_longitudes}")  # fmt: skip
        if self.radius is not None and not self.radius > 0:
            raise ValueError(f"radius must be positive (or None), got {self.radius}")

    @classmethod
    def from_dict(cls, data: dict) -> "FarFieldConfig":
        """The inverse of ``dataclasses.asdict`` after a JSON round trip (lists back to tuples)."""
        values = dict(data)
        if "latitude_range_deg" in values:
            values["latitude_range_deg"] = tuple(values["latitude_range_deg"])
        return cls(**values)

    def radius_for(self, scene_extent: float) -> float:
        """The sphere radius for a scene of extent ``scene_extent`` (output-world units)."""
        if self.radius is not None:
            return self.radius
        if not scene_extent > 0:
            raise ValueError(f"The far field needs a positive scene extent when radius is None; got {scene_extent}")
        return self.radius_factor * scene_extent


FLUX4D_HEMISPHERE = FarFieldConfig(num_latitudes=64, num_longitudes=256, latitude_range_deg=(0.0, 90.0))
"""Flux4D's far field: the upper hemisphere at 4 × the scene extent."""


def far_field_gaussians(
    config: FarFieldConfig,
    centre: Float[Tensor, "3"],
    scene_extent: float,
    cameras: Optional[Cameras] = None,
    images: Optional[Sequence[Float[Tensor, "H W 3"]]] = None,
) -> GaussianParams:
    """``num_latitudes · num_longitudes`` far-field Gaussians (row-major, highest latitude first) around
    ``centre``, coloured from ``images`` through ``cameras`` when given (see the module docstring)."""
    radius = config.radius_for(scene_extent)
    low, high = (math.radians(value) for value in config.latitude_range_deg)
    rows, columns = config.num_latitudes, config.num_longitudes
    lat_step, lon_step = (high - low) / rows, 2.0 * math.pi / columns
    dtype = centre.dtype if centre.is_floating_point() else torch.float32
    latitude = high - (torch.arange(rows, dtype=torch.float64) + 0.5) * lat_step
    longitude = (torch.arange(columns, dtype=torch.float64) + 0.5) * lon_step
    lat, lon = (grid.reshape(-1) for grid in torch.meshgrid(latitude, longitude, indexing="ij"))
    outward = torch.stack([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()], dim=-1)
    east = torch.stack([-lon.sin(), lon.cos(), torch.zeros_like(lon)], dim=-1)
    north = torch.stack([-lat.sin() * lon.cos(), -lat.sin() * lon.sin(), lat.cos()], dim=-1)
    quats = rotmat_to_quat(torch.stack([east, north, outward], dim=-1))
    tangential = torch.stack([radius * lat.cos() * lon_step, torch.full_like(lat, radius * lat_step)], dim=-1)
    tangential = config.overlap * tangential
    scales = torch.cat([tangential, config.thickness * tangential.min(dim=-1, keepdim=True).values], dim=-1)
    means = (centre.double().cpu() + radius * outward).to(dtype)

    if (cameras is None) != (images is None):
        raise ValueError("far_field_gaussians colours from images only with both cameras and images; got one of them")
    colours = torch.full_like(means, UNSEEN_GREY)
    if cameras is not None and images is not None:
        colours, _ = colour_points(means, cameras, images)
    device = centre.device
    return GaussianParams(
        means=means.to(device),
        quats=quats.to(device, dtype),
        scales=scales.to(device, dtype),
        opacities=torch.full((means.shape[0],), config.opacity, dtype=dtype, device=device),
        colors=colours.to(device, dtype),
    )
