"""The contract every optical-flow backend fulfils: one image pair in, a full-resolution flow and a 1/stride
embedding out.

Keeping the contract this small lets the sequence logic (which pairs, boundary frames, progress, caching) live once
in ``embeddings.py`` / ``cache.py`` while RAFT and DIS only differ in how a single pair is processed.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from jaxtyping import Float, UInt8
from torch import Tensor


@dataclass
class PairFlow:
    """Result for one ordered pair (image1 → image2), expressed on image1's pixel grid."""

    flow: Float[Tensor, "2 H W"]
    """Displacement in pixels (x, y) of each image1 pixel towards image2."""
    embedding: Float[Tensor, "C h w"]
    """Motion embedding at 1/stride resolution, h = ceil(H / stride)."""


class FlowBackend(ABC):
    """An optical-flow estimator that also exposes a dense motion embedding."""

    name: str
    """Backend name; part of the cache key."""
    stride: int = 8
    """Embedding cell size in pixels: cell (i, j) summarises pixels [stride·i, stride·(i+1)) × [stride·j, ...)."""
    channels: int
    """Number of embedding channels C."""

    @abstractmethod
    def identity(self) -> str:
        """A string that changes whenever the backend would produce different numbers (weights file, settings)."""

    @abstractmethod
    def compute_pair(self, image1: UInt8[Tensor, "H W 3"], image2: UInt8[Tensor, "H W 3"]) -> PairFlow:
        """Flow and embedding for image1 → image2 (uint8 RGB frames of equal size)."""


def embedding_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """(h, w) of an embedding map: every pixel belongs to exactly one cell, so partial border cells count."""
    return math.ceil(height / stride), math.ceil(width / stride)


def fit_channels(features: Float[Tensor, "D h w"], channels: int) -> Float[Tensor, "C h w"]:
    """Bring a D-channel feature map to C channels: keep the first C if D ≥ C, append zero channels if D < C.

    A fixed rule (no projection weights) so that embeddings stay a deterministic function of the backbone, and the
    native channels keep their meaning and position for a downstream network.
    """
    d = features.shape[0]
    if d >= channels:
        return features[:channels]
    pad = features.new_zeros((channels - d, *features.shape[1:]))
    return torch.cat([features, pad], dim=0)
