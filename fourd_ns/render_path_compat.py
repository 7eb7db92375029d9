"""Make ``ns-render``'s camera paths sweep time from 0 to 1 when they have no times of their own (nerfstudio 1.1.5).

nerfstudio builds each ``ns-render`` path in ``nerfstudio.cameras.camera_paths`` and renders it camera by camera:

- ``interpolate``: ``get_interpolated_camera_path`` rebuilds the cameras from poses and intrinsics only, so the
  dataset cameras' times are dropped;
- ``camera-path``: ``get_path_from_json`` gives times only when every camera of the JSON has a ``render_time``
  (the viewer writes one for time-dependent scenes); a path from elsewhere (hand-written, the Blender add-on) has none;
- ``spiral``: ``get_spiral_path`` already sweeps 0 → 1 when its start camera has times (see below).

A time-dependent model (``camera_time`` in :mod:`fourd_ns.geometry.camera_conventions`) renders a camera without times
at time 0, so every frame of the first two showed the scene frozen at its first instant. This module wraps the first
two builders so that such a path gets :func:`path_times` (0 → 1, evenly along the path, as the spiral does):
an interpolated path when the cameras it interpolates have times (the dataset is a sequence), a JSON path when none of
its cameras has a ``render_time``. Times given in a JSON path are kept; a JSON path with ``render_time`` on only some
cameras is refused (nerfstudio would silently drop them all). Models that do not depend on time ignore camera times.
The interpolated path also keeps the image size of the first camera (nerfstudio drops it; see the wrapper).

``ns-render spiral`` accepts only ray-based datamanagers (``VanillaDataManager`` and kin), so it refuses every
full-image method (splatfacto and ours) before it builds a path; nothing here changes that.

``render.py`` imports the builders by name (``from nerfstudio.cameras.camera_paths import ...``) before it imports
nerfstudio's plugin registry, which imports this package; :func:`sweep_time_along_render_paths` therefore replaces
them in ``camera_paths`` (for a later import) and in an already imported ``nerfstudio.scripts.render``.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Dict

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio.cameras.cameras import Cameras

_WRAPPED_MARK = "_fourd_sweeps_time"


def path_times(num_cameras: int) -> Float[Tensor, "num_cameras 1"]:
    """Times of the cameras of a rendered path: evenly spaced from 0 (first camera) to 1 (last); [0] for one camera."""
    if num_cameras < 1:
        raise ValueError(f"A camera path needs at least one camera, got {num_cameras}")
    return torch.linspace(0.0, 1.0, num_cameras)[:, None]


def with_path_times(cameras: Cameras) -> Cameras:
    """``cameras`` (a path, one batch dimension) with :func:`path_times`, in place; returns it."""
    cameras.times = path_times(len(cameras)).to(cameras.device)
    return cameras


def _interpolated_path_sweeping_time(original: Callable[..., Cameras]) -> Callable[..., Cameras]:
    @functools.wraps(original)
    def get_interpolated_camera_path(cameras: Cameras, steps: int, order_poses: bool) -> Cameras:
        path = original(cameras, steps, order_poses)
        # nerfstudio keeps the first camera's principal point but not its image size, which Cameras then guesses as
        # 2 cx x 2 cy: a cropped or padded video for cameras whose principal point is off centre (PandaSet's).
        return Cameras(
            camera_to_worlds=path.camera_to_worlds,
            fx=path.fx,
            fy=path.fy,
            cx=path.cx,
            cy=path.cy,
            width=int(cameras.width.reshape(-1)[0]),
            height=int(cameras.height.reshape(-1)[0]),
            camera_type=path.camera_type,
            times=path_times(len(path)) if cameras.times is not None else None,
        )

    setattr(get_interpolated_camera_path, _WRAPPED_MARK, True)
    return get_interpolated_camera_path


def _json_path_sweeping_time(original: Callable[[Dict[str, Any]], Cameras]) -> Callable[[Dict[str, Any]], Cameras]:
    @functools.wraps(original)
    def get_path_from_json(camera_path: Dict[str, Any]) -> Cameras:
        entries = camera_path["camera_path"]
        timed = sum("render_time" in entry for entry in entries)
        if 0 < timed < len(entries):
            missing = [i for i, entry in enumerate(entries) if "render_time" not in entry]
            raise ValueError(
                f"The camera path JSON gives 'render_time' for {timed} of its {len(entries)} cameras (entries "
                f"{missing[:10]}{' ...' if len(missing) > 10 else ''} of 'camera_path' have none); give it for every "
                "camera, or for none to sweep time from 0 to 1 along the path"
            )
        path = original(camera_path)
        if path.times is None:
            with_path_times(path)
        return path

    setattr(get_path_from_json, _WRAPPED_MARK, True)
    return get_path_from_json


_WRAPPERS = {
    "get_interpolated_camera_path": _interpolated_path_sweeping_time,
    "get_path_from_json": _json_path_sweeping_time,
}


def sweep_time_along_render_paths() -> None:
    """Wrap nerfstudio's interpolated and JSON path builders (see the module docstring); idempotent."""
    from nerfstudio.cameras import camera_paths

    modules = [camera_paths]
    render = sys.modules.get("nerfstudio.scripts.render")  # partially initialised when ns-render is importing us
    if render is not None:
        modules.append(render)
    for module in modules:
        for name, wrap in _WRAPPERS.items():
            builder = getattr(module, name, None)
            if builder is not None and not getattr(builder, _WRAPPED_MARK, False):
                setattr(module, name, wrap(builder))
