"""Our uncompiled view-matrix conversion equals nerfstudio's splatfacto ``get_viewmat``."""

from __future__ import annotations

import torch

from fourd_ns.geometry.camera_conventions import viewmat_from_nerfstudio_c2w
from nerfstudio.models.splatfacto import get_viewmat


def test_viewmat_matches_splatfacto() -> None:
    torch.manual_seed(0)
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, 3))
    c2w = torch.cat([rotation, torch.randn(3, 3, 1)], dim=-1)
    ours = viewmat_from_nerfstudio_c2w(c2w)
    assert torch.allclose(ours, get_viewmat(c2w), atol=1e-6)
    # a world point in front of the OpenGL camera (−z) lands at positive OpenCV depth
    point = c2w[0, :, 3] - c2w[0, :, 2]
    camera_point = ours[0, :3, :3] @ point + ours[0, :3, 3]
    assert camera_point[2] > 0
