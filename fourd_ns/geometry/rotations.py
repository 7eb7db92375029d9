"""Rotation helpers shared by the rasterizer, the deformation losses and the driving scene.

Quaternions are wxyz (the convention of gsplat and nerfstudio); roma, which does the products and conversions,
works in xyzw, so the wrappers here are the one place where the two orders meet.
"""

from __future__ import annotations

import roma
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor


def quat_to_rotmat(quats: Float[Tensor, "*batch 4"]) -> Float[Tensor, "*batch 3 3"]:
    """Rotation matrices from (unnormalised) quaternions in wxyz order, the convention of gsplat and nerfstudio."""
    w, x, y, z = torch.unbind(F.normalize(quats, p=2, dim=-1), dim=-1)
    rot = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )  # fmt: skip
    return rot.reshape(quats.shape[:-1] + (3, 3))


def rotmat_to_quat(rotations: Float[Tensor, "*batch 3 3"]) -> Float[Tensor, "*batch 4"]:
    """Unit wxyz quaternions of rotation matrices (roma's numerically stable conversion)."""
    return roma.quat_xyzw_to_wxyz(roma.rotmat_to_unitquat(rotations))


def quat_multiply(first: Float[Tensor, "*batch 4"], second: Float[Tensor, "*batch 4"]) -> Float[Tensor, "*batch 4"]:
    """Hamilton product ``first ⊗ second`` of wxyz quaternions: the rotation ``second`` followed by ``first``
    (``R(first ⊗ second) = R(first) R(second)``); unit inputs give a unit output."""
    product = roma.quat_product(roma.quat_wxyz_to_xyzw(first), roma.quat_wxyz_to_xyzw(second))
    return roma.quat_xyzw_to_wxyz(product)
