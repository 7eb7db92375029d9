"""Materials, directional lights and the shading model: ambient + Lambert + Blinn-Phong specular.

The specular lobe is what makes the synthetic scenes view-dependent like NeRF-DS's shiny objects:
the left and right rig cameras see highlights in different places on the same surface point.
There are no shadows, so a static surface keeps its colour while other objects move.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fourd_ns.synthetic.textures import Texture


@dataclass(frozen=True, eq=False)
class Material:
    texture: Texture
    specular: float = 0.0
    """Strength of the white specular lobe (0 = matte)."""
    shininess: float = 32.0
    """Blinn-Phong exponent: larger = smaller, sharper highlight."""


@dataclass(frozen=True, eq=False)
class DirectionalLight:
    direction: np.ndarray
    """[3] world direction from the surface towards the light."""
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)


def shade(
    albedo: Tensor,
    normals: Tensor,
    to_camera: Tensor,
    specular: Tensor,
    shininess: Tensor,
    lights: tuple[DirectionalLight, ...],
    ambient: float,
) -> Tensor:
    """Linear RGB [N, 3] (clamped to [0, 1]).

    albedo [N, 3]; normals [N, 3] unit; to_camera [N, 3] unit direction from the point to the camera;
    specular, shininess [N]. Surfaces are two-sided: normals are flipped to face the camera.
    """
    facing = torch.where(((normals * to_camera).sum(dim=1) < 0)[:, None], -normals, normals)
    colour = albedo * ambient
    for light in lights:
        l_dir = torch.as_tensor(light.direction / np.linalg.norm(light.direction), dtype=albedo.dtype)
        l_col = torch.tensor(light.colour, dtype=albedo.dtype)
        n_dot_l = (facing @ l_dir).clamp(min=0.0)
        half = torch.nn.functional.normalize(to_camera + l_dir, dim=1)
        n_dot_h = (facing * half).sum(dim=1).clamp(min=0.0)
        highlight = specular * n_dot_h**shininess * (n_dot_l > 0)
        colour = colour + (albedo * n_dot_l[:, None] + highlight[:, None]) * l_col
    return colour.clamp(0.0, 1.0)
