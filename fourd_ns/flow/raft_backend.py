"""torchvision RAFT (Teed & Deng, ECCV 2020) as a flow backend that also exposes its 1/8-resolution hidden state.

Which tensor is the embedding: the **final ConvGRU hidden state** of the last refinement iteration, captured with a
forward hook on ``model.update_block`` (which returns ``(hidden_state, delta_flow)``). It is the network's own
summary of the motion at each 1/8 cell — the flow head and the convex-upsampling mask are both read from it — and it
is the counterpart of MemFlow's ``net`` tensor (the backbone FLAG-4D uses), so a model trained on it carries over.
``raft_large`` gives 128 channels; ``raft_small``'s hidden state has 96, brought to C by ``fit_channels``
(first C kept, or zero channels appended: 96 real + 32 zero channels for C = 128).

Weights are never downloaded: they come from a user-given file or from the file torchvision's own
``load_state_dict_from_url`` would have cached (``torch.hub.get_dir()/checkpoints/<basename of the weights URL>``).

Inputs: uint8 RGB → float in [−1, 1] (what torchvision's ``OpticalFlow`` transform does), replicate-padded at the
bottom/right to a multiple of 8 and at least 128 pixels per side (RAFT's correlation pyramid needs 16 cells at 1/8;
torchvision's own size check has a precedence bug, so we never rely on it), and cropped back afterwards. Padding at
the bottom/right keeps embedding cell (i, j) aligned with the same pixels as in DIS.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float, UInt8
from torch import Tensor, nn
from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights, raft_large, raft_small

from fourd_ns.flow.backend import FlowBackend, PairFlow, embedding_size, fit_channels

RaftVariant = Literal["raft_large", "raft_small"]
RAFT_MIN_SIZE = 128
"""Smallest padded side: RAFT's 4-level correlation pyramid needs at least 16 feature cells per side."""

_BUILDERS = {"raft_large": (raft_large, Raft_Large_Weights), "raft_small": (raft_small, Raft_Small_Weights)}


def raft_hub_cache_paths(variant: RaftVariant) -> list[Path]:
    """Where torchvision would have cached each official weights file of ``variant``, the default weights first."""
    _, weights_enum = _BUILDERS[variant]
    ordered = [weights_enum.DEFAULT] + [w for w in weights_enum if w is not weights_enum.DEFAULT]
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    return [checkpoints / os.path.basename(w.url) for w in ordered]


def find_raft_weights(variant: RaftVariant, weights_path: Optional[Path]) -> tuple[Optional[Path], list[Path]]:
    """(the weights file to use or None, every path looked at). An explicit ``weights_path`` is the only candidate."""
    candidates = [Path(weights_path).expanduser()] if weights_path is not None else raft_hub_cache_paths(variant)
    found = next((p for p in candidates if p.is_file()), None)
    return found, candidates


def missing_weights_message(variant: RaftVariant, looked_at: list[Path]) -> str:
    """Error text naming the files looked at and the two ways of providing one."""
    _, weights_enum = _BUILDERS[variant]
    default_file = os.path.basename(weights_enum.DEFAULT.url)
    return (
        f"{variant} weights not found; looked at: {', '.join(str(p) for p in looked_at)}. "
        f"Pass a local torchvision state dict with --weights-path (FlowEmbeddingConfig.weights_path), or copy "
        f"{default_file} (from {weights_enum.DEFAULT.url}) to {raft_hub_cache_paths(variant)[0].parent}/. "
        f"Weights are never downloaded; use backend 'dis' to run without them."
    )


def load_raft(variant: RaftVariant, weights_file: Path) -> nn.Module:
    """Build ``variant`` and load a torchvision-format state dict from ``weights_file`` (eval mode, CPU)."""
    builder, _ = _BUILDERS[variant]
    model = builder(weights=None, progress=False)
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise RuntimeError(
            f"{weights_file} is not a torchvision {variant} state dict (as saved by torchvision's Weights enum or "
            f"torch.save(model.state_dict())): {error}"
        ) from error
    return model.eval()


def pad_for_raft(images: Float[Tensor, "B 3 H W"]) -> Float[Tensor, "B 3 H2 W2"]:
    """Replicate-pad bottom/right to a multiple of 8 and at least ``RAFT_MIN_SIZE`` per side."""
    height, width = images.shape[-2:]
    target_h = max(RAFT_MIN_SIZE, -(-height // 8) * 8)
    target_w = max(RAFT_MIN_SIZE, -(-width // 8) * 8)
    if (target_h, target_w) == (height, width):
        return images
    return F.pad(images, (0, target_w - width, 0, target_h - height), mode="replicate")


class RAFTFlowBackend(FlowBackend):
    """RAFT flow plus its final GRU hidden state as the embedding (see the module docstring)."""

    stride = 8

    def __init__(
        self,
        model: nn.Module,
        variant: RaftVariant,
        weights_file: Optional[Path],
        channels: int = 128,
        num_flow_updates: int = 12,
        device: Optional[str] = None,
    ) -> None:
        if num_flow_updates < 1:
            raise ValueError(f"num_flow_updates must be at least 1 (got {num_flow_updates}): the embedding is the "
                             "hidden state after the last update.")
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(self.device)
        self.name = variant
        self.weights_file = weights_file
        self.channels = channels
        self.num_flow_updates = num_flow_updates

    @classmethod
    def from_weights_file(cls, variant: RaftVariant, weights_file: Path, **kwargs) -> "RAFTFlowBackend":
        return cls(load_raft(variant, weights_file), variant, weights_file, **kwargs)

    @property
    def hidden_channels(self) -> int:
        """Native embedding width: 128 for raft_large, 96 for raft_small."""
        return self.model.update_block.hidden_state_size

    def identity(self) -> str:
        if self.weights_file is None:  # a model built in memory: identify it by its parameters
            digest = hashlib.sha256()
            for key, value in self.model.state_dict().items():
                digest.update(key.encode())
                digest.update(value.detach().cpu().contiguous().numpy().tobytes())
            return f"{self.name}:state-sha256:{digest.hexdigest()}"
        stat = Path(self.weights_file).stat()
        return f"{self.name}:{Path(self.weights_file).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"

    @torch.no_grad()
    def flow_and_hidden(
        self, image1: UInt8[Tensor, "B H W 3"], image2: UInt8[Tensor, "B H W 3"]
    ) -> tuple[Float[Tensor, "B 2 H W"], Float[Tensor, "B D h w"]]:
        """Final upsampled flow cropped to H×W and the final hidden state cropped to ceil(H/8)×ceil(W/8)."""
        height, width = image1.shape[1:3]

        def to_model(images: Tensor) -> Tensor:
            normalised = images.permute(0, 3, 1, 2).float().div(255.0).sub(0.5).div(0.5)  # OpticalFlow transform
            return pad_for_raft(normalised.to(self.device))

        captured: dict[str, Tensor] = {}

        def keep_hidden_state(module: nn.Module, inputs, outputs) -> None:
            captured["hidden"] = outputs[0]  # overwritten each iteration: the last one stays

        handle = self.model.update_block.register_forward_hook(keep_hidden_state)
        try:
            flows = self.model(to_model(image1), to_model(image2), num_flow_updates=self.num_flow_updates)
        finally:
            handle.remove()
        h, w = embedding_size(height, width, self.stride)
        return flows[-1][..., :height, :width].float().cpu(), captured["hidden"][..., :h, :w].float().cpu()

    def compute_pair(self, image1: UInt8[Tensor, "H W 3"], image2: UInt8[Tensor, "H W 3"]) -> PairFlow:
        flow, hidden = self.flow_and_hidden(image1[None], image2[None])
        return PairFlow(flow=flow[0], embedding=fit_channels(hidden[0], self.channels))
