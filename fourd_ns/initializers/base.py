"""What an initializer receives and returns, and the interface every initializer implements.

An initializer turns the training data into the seed of a Gaussian model before training starts: points and their
colours, optionally a per-point velocity and cameras for the training video. The pipeline builds the inputs from
its datamanager, runs the initializer once (through the cache of :mod:`fourd_ns.initializers.cache`) and hands the
points to the model; an initializer never opens dataset files itself.

Conventions:

- Points live in the dataparser's world (nerfstudio's normalised frame and scale) whenever the dataset has cameras:
  an initializer that predicts geometry in its own frame aligns it to the known cameras. Without known cameras its
  own frame is the world (for Flow4R: the anchor camera's OpenCV axes at the network's scale).
- ``velocities`` are in world units per unit of normalised time (times span [0, 1] over the sequence), measured at
  each point's own ``point_times``: a point at ``x`` at time ``t`` is near ``x + (t' − t)·v`` at a nearby ``t'``.
- Cameras are nerfstudio camera-to-world poses (OpenGL axes) of the training video's frames, and pixel intrinsics at
  the dataset images' resolution.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, fields
from typing import Optional, Sequence

import torch
from jaxtyping import Float, UInt8
from torch import Tensor

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.configs.base_config import InstantiateConfig


@dataclass
class InitializerInputs:
    """The training data an initializer may use (built by the pipeline from its datamanager)."""

    images: Sequence[Tensor]
    """The training video: T frames ``[H, W, 3]`` (uint8, or float in [0, 1]), one per distinct time, in time order.
    A list, because datasets may mix image sizes; initializers that need one size check it."""
    times: Float[Tensor, "T"]
    """Normalised time of each frame (strictly increasing)."""
    scene_box: Float[Tensor, "2 3"]
    """The dataparser's scene box (min corner, max corner) in world units."""
    source: str
    """Names the dataset in messages and in the cache key (its path and split)."""
    cameras: Optional[Cameras] = None
    """Known cameras of the video's frames (nerfstudio convention), or None when the dataset has none."""
    dataset_points: Optional[Float[Tensor, "N 3"]] = None
    """The dataparser's seed points (metadata ``points3D_xyz``), if any."""
    dataset_colors: Optional[UInt8[Tensor, "N 3"]] = None
    """Their colours (metadata ``points3D_rgb``)."""

    def __post_init__(self) -> None:
        frames = len(self.images)
        shapes = [tuple(image.shape) for image in self.images]
        if any(len(shape) != 3 or shape[-1] != 3 for shape in shapes):
            raise ValueError(f"InitializerInputs.images must be [H, W, 3] frames, got shapes {sorted(set(shapes))}")
        if self.times.shape != (frames,):
            raise ValueError(f"InitializerInputs.times must be [{frames}] (one per frame), got {tuple(self.times.shape)}")
        if frames > 1 and not bool((self.times[1:] > self.times[:-1]).all()):
            raise ValueError(f"InitializerInputs.times must increase strictly (a video in time order), got "
                             f"{self.times.tolist()}")
        if self.cameras is not None and self.cameras.shape[0] != frames:
            raise ValueError(f"InitializerInputs.cameras must hold one camera per frame ({frames}), got {self.cameras.shape}")
        if (self.dataset_points is None) != (self.dataset_colors is None):
            raise ValueError("InitializerInputs: dataset_points and dataset_colors must be given together")

    def frames_uint8(self) -> list[UInt8[Tensor, "H W 3"]]:
        """The frames as uint8 on the CPU (float frames are rounded from [0, 1])."""
        return [_to_uint8(image.detach().cpu()) for image in self.images]

    def video(self) -> Float[Tensor, "T 3 H W"]:
        """The frames stacked as float RGB in [0, 1], channels first (the layout networks take); one size needed."""
        sizes = sorted({tuple(image.shape[:2]) for image in self.images})
        if len(sizes) != 1:
            raise ValueError(f"The training video of {self.source} mixes image sizes {sizes}; this initializer needs "
                             "frames of one size.")
        return torch.stack(self.frames_uint8()).permute(0, 3, 1, 2).float() / 255.0


def _to_uint8(image: Tensor) -> UInt8[Tensor, "H W 3"]:
    if image.dtype == torch.uint8:
        return image
    return (image.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


@dataclass
class InitializerResult:
    """Seed of a Gaussian model (conventions in the module docstring)."""

    points: Float[Tensor, "N 3"]
    colors: UInt8[Tensor, "N 3"]
    point_times: Optional[Float[Tensor, "N"]] = None
    """Time at which each point was observed; None for time-less points (e.g. a static point cloud)."""
    velocities: Optional[Float[Tensor, "N 3"]] = None
    """Velocity of each point at its ``point_times`` (world units per unit of normalised time)."""
    camera_to_worlds: Optional[Float[Tensor, "T 3 4"]] = None
    """Camera-to-world poses (OpenGL axes) of the training video's frames, in the world of ``points``."""
    intrinsics: Optional[Float[Tensor, "T 3 3"]] = None
    """Pixel intrinsics of those frames at the dataset images' resolution."""

    def __post_init__(self) -> None:
        count = self.points.shape[0]
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise ValueError(f"InitializerResult.points must be [N, 3], got {tuple(self.points.shape)}")
        if self.colors.shape != (count, 3) or self.colors.dtype != torch.uint8:
            raise ValueError(f"InitializerResult.colors must be uint8 [{count}, 3], got {self.colors.dtype} "
                             f"{tuple(self.colors.shape)}")
        if self.point_times is not None and self.point_times.shape != (count,):
            raise ValueError(f"InitializerResult.point_times must be [{count}], got {tuple(self.point_times.shape)}")
        if self.velocities is not None and self.velocities.shape != (count, 3):
            raise ValueError(f"InitializerResult.velocities must be [{count}, 3], got {tuple(self.velocities.shape)}")
        if (self.camera_to_worlds is None) != (self.intrinsics is None):
            raise ValueError("InitializerResult: camera_to_worlds and intrinsics must be given together")
        if self.camera_to_worlds is not None:
            frames = self.camera_to_worlds.shape[0]
            if self.camera_to_worlds.shape != (frames, 3, 4) or self.intrinsics.shape != (frames, 3, 3):
                raise ValueError(f"InitializerResult cameras must be [T, 3, 4] and [T, 3, 3], got "
                                 f"{tuple(self.camera_to_worlds.shape)} and {tuple(self.intrinsics.shape)}")

    @property
    def num_points(self) -> int:
        return self.points.shape[0]

    def seed_points(self) -> tuple[Float[Tensor, "N 3"], UInt8[Tensor, "N 3"]]:
        """``(xyz, rgb)`` as nerfstudio models take them (``seed_points`` of ``Model.__init__``)."""
        return self.points.float(), self.colors


@dataclass
class InitializerConfig(InstantiateConfig):
    """Settings of an initializer; ``setup()`` builds it (subclasses set ``_target``). Every field is part of the
    cache key."""

    def identity(self) -> dict:
        """JSON-ready settings that determine the result (every field except ``_target``)."""
        return {f.name: _json_ready(getattr(self, f.name)) for f in fields(self) if f.name != "_target"}


def _json_ready(value):
    if isinstance(value, (tuple, list)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class Initializer(abc.ABC):
    """Produces an :class:`InitializerResult` from :class:`InitializerInputs`."""

    name: str = "initializer"
    """Short name used in file names and messages (the CLI subcommand)."""

    def __init__(self, config: InitializerConfig) -> None:
        self.config = config

    def identity(self) -> dict:
        """Everything besides the inputs that determines the result: the settings, plus e.g. a weights file's
        identity in subclasses. Part of the cache key."""
        return {"initializer": self.name, "settings": self.config.identity()}

    @abc.abstractmethod
    def initialize(self, inputs: InitializerInputs, device: torch.device | str = "cpu") -> InitializerResult:
        """Compute the seed; ``device`` is where heavy work (a network) may run. Results are on the CPU."""
