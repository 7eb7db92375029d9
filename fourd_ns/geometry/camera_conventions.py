"""Conversions between Nerfies/HyperNeRF camera poses and nerfstudio camera-to-world poses.

Nerfies stores, per camera, ``orientation`` (the world-to-camera rotation, camera axes in OpenCV order:
x right, y down, z forward) and ``position`` (the camera centre in world coordinates). nerfstudio wants a
camera-to-world matrix whose camera axes follow OpenGL (x right, y up, camera looks along -z).
Scenes are normalised the Nerfies way, ``p_normalised = (p - center) * scale``, with no world-axis
permutation, so a pose or point can always be mapped back to the dataset's own world frame.

These are the only places where the two conventions meet; every function is pure and works on batches.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

# Flipping the camera y and z axes turns OpenCV camera axes into OpenGL ones (and back: it is an involution).
_OPENCV_TO_OPENGL = torch.tensor([1.0, -1.0, -1.0])


def nerfies_to_c2w_opengl(
    orientation: Float[Tensor, "*batch 3 3"], position: Float[Tensor, "*batch 3"]
) -> Float[Tensor, "*batch 3 4"]:
    """Camera-to-world pose in OpenGL camera axes from a Nerfies world-to-camera rotation and camera centre."""
    rotation_c2w = orientation.transpose(-1, -2) * _OPENCV_TO_OPENGL.to(orientation)
    return torch.cat([rotation_c2w, position[..., None]], dim=-1)


def c2w_opengl_to_nerfies(
    c2w: Float[Tensor, "*batch 3 4"],
) -> tuple[Float[Tensor, "*batch 3 3"], Float[Tensor, "*batch 3"]]:
    """Inverse of :func:`nerfies_to_c2w_opengl`: returns (orientation, position)."""
    rotation_c2w = c2w[..., :3, :3] * _OPENCV_TO_OPENGL.to(c2w)
    return rotation_c2w.transpose(-1, -2), c2w[..., :3, 3]


def switch_c2w_camera_axes(camera_to_world: Float[Tensor, "*batch R 4"]) -> Float[Tensor, "*batch R 4"]:
    """A camera-to-world pose ``[*, 3, 4]`` or ``[*, 4, 4]`` with OpenGL camera axes turned into OpenCV axes, or back.

    The camera's y and z axes (rotation columns 1 and 2) change sign and the centre stays; the flip is its own
    inverse, so the same call converts in both directions.
    """
    flip = torch.ones(4, dtype=camera_to_world.dtype, device=camera_to_world.device)
    flip[1:3] = -1.0
    return camera_to_world * flip


def viewmat_from_nerfstudio_c2w(camera_to_world: Float[Tensor, "C 3 4"]) -> Float[Tensor, "C 4 4"]:
    """gsplat's world-to-camera view matrix (OpenCV camera axes) from nerfstudio camera-to-world poses (OpenGL).

    Same result as ``nerfstudio.models.splatfacto.get_viewmat`` but not wrapped in ``torch.compile``, which on a
    CPU costs a ~15 s C++ build at the first call.
    """
    rotation = camera_to_world[:, :3, :3] * _OPENCV_TO_OPENGL.to(camera_to_world)
    rotation_inv = rotation.transpose(1, 2)
    viewmat = torch.zeros(camera_to_world.shape[0], 4, 4, device=camera_to_world.device, dtype=camera_to_world.dtype)
    viewmat[:, :3, :3] = rotation_inv
    viewmat[:, :3, 3:4] = -torch.bmm(rotation_inv, camera_to_world[:, :3, 3:4])
    viewmat[:, 3, 3] = 1.0
    return viewmat


def normalise_points(
    points: Float[Tensor, "*batch 3"], center: Float[Tensor, "3"], scale: float
) -> Float[Tensor, "*batch 3"]:
    """Nerfies scene normalisation ``(p - center) * scale``, applied to camera centres and scene points."""
    return (points - center) * scale


def denormalise_points(
    points: Float[Tensor, "*batch 3"], center: Float[Tensor, "3"], scale: float
) -> Float[Tensor, "*batch 3"]:
    """Inverse of :func:`normalise_points`: back to the dataset's world coordinates."""
    return points / scale + center


def nerfies_normalisation_transform(center: Float[Tensor, "3"]) -> Float[Tensor, "3 4"]:
    """nerfstudio ``dataparser_transform`` for the Nerfies normalisation.

    nerfstudio applies ``scale * (transform @ [p; 1])``; with ``transform = [I | -center]`` and
    ``dataparser_scale = scale`` this is exactly ``(p - center) * scale``, so ``ns-export`` and
    ``dataparser_transforms.json`` map results back to the dataset's world frame.
    """
    return torch.cat([torch.eye(3, dtype=center.dtype), -center[:, None]], dim=1)


def camera_time(camera) -> float:
    """A nerfstudio ``Cameras``' (first) time in [0, 1]; cameras without times (static viewers) are at time 0."""
    if camera.times is None:
        return 0.0
    return float(camera.times.reshape(-1)[0].item())
