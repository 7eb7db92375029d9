"""nerfstudio camera-to-world (OpenGL axes) → gsplat world-to-camera view matrix (OpenCV axes)."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def viewmat_from_nerfstudio_c2w(camera_to_world: Float[Tensor, "C 3 4"]) -> Float[Tensor, "C 4 4"]:
    """Invert a nerfstudio pose and flip its y and z camera axes (OpenGL → OpenCV), as gsplat expects.

    Same result as ``nerfstudio.models.splatfacto.get_viewmat`` but not wrapped in ``torch.compile``, which on a
    CPU costs a ~15 s C++ build at the first call.
    """
    rotation = camera_to_world[:, :3, :3] * torch.tensor([1.0, -1.0, -1.0], device=camera_to_world.device)
    translation = camera_to_world[:, :3, 3:4]
    rotation_inv = rotation.transpose(1, 2)
    viewmat = torch.zeros(camera_to_world.shape[0], 4, 4, device=camera_to_world.device, dtype=camera_to_world.dtype)
    viewmat[:, :3, :3] = rotation_inv
    viewmat[:, :3, 3:4] = -torch.bmm(rotation_inv, translation)
    viewmat[:, 3, 3] = 1.0
    return viewmat
