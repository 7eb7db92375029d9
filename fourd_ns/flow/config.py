"""User-facing configuration of the flow embeddings and the choice of backend.

``auto`` prefers RAFT-large whenever its weights are on disk, since FLAG-4D was designed around learned flow
features, and otherwise falls back to DIS so that training never stops for a missing checkpoint; the console says
which backend runs and why. Asking for RAFT explicitly without weights, or giving a ``weights_path`` that does not
exist, is an error, because silently substituting a different backend would change the model's inputs behind the
user's back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from nerfstudio.configs.base_config import PrintableConfig
from nerfstudio.utils.rich_utils import CONSOLE

from fourd_ns.flow.backend import FlowBackend
from fourd_ns.flow.dis_backend import DISFlowBackend, DISPreset
from fourd_ns.flow.raft_backend import RAFTFlowBackend, find_raft_weights, missing_weights_message


@dataclass
class FlowEmbeddingConfig(PrintableConfig):
    """How per-frame optical-flow embeddings are computed (they are cached in the run's output folder)."""

    backend: Literal["auto", "raft_large", "raft_small", "dis"] = "auto"
    """Flow backend: 'raft_large' / 'raft_small' (torchvision RAFT, needs weights), 'dis' (OpenCV DIS, no weights),
    or 'auto' = raft_large if its weights are found in the torch hub cache (or at weights_path, which must then
    exist), else dis."""
    weights_path: Optional[Path] = None
    """Local RAFT weights file (a torchvision state dict). If unset, the file torchvision caches under
    torch.hub.get_dir()/checkpoints/ is used when present. Nothing is ever downloaded."""
    embedding_channels: int = 128
    """Channels C of each embedding (RAFT's hidden state or DIS's fixed encoding is truncated or zero-padded to C)."""
    num_flow_updates: int = 12
    """RAFT refinement iterations (torchvision's default 12); ignored by DIS."""
    dis_preset: DISPreset = "medium"
    """OpenCV DIS speed/quality preset for the DIS backend."""
    device: Optional[str] = None
    """Device for RAFT ('cuda', 'cpu'); default: CUDA when available."""

    def setup(self) -> FlowBackend:
        return select_flow_backend(self)


def select_flow_backend(config: FlowEmbeddingConfig) -> FlowBackend:
    """The backend ``config`` asks for, logging the choice; raises FileNotFoundError for RAFT without weights."""
    if config.backend == "dis":
        CONSOLE.log(f"Optical flow: using the DIS backend (preset '{config.dis_preset}', as configured).")
        return DISFlowBackend(channels=config.embedding_channels, preset=config.dis_preset)

    variant = "raft_large" if config.backend == "auto" else config.backend
    weights_file, looked_at = find_raft_weights(variant, config.weights_path)
    if weights_file is None:
        # An explicit path that does not exist is a mistake to report, not a reason to switch backends quietly.
        if config.backend != "auto" or config.weights_path is not None:
            raise FileNotFoundError(missing_weights_message(variant, looked_at))
        CONSOLE.log(
            f"Optical flow: RAFT weights not found at {', '.join(str(p) for p in looked_at)}: using the DIS fallback "
            f"(preset '{config.dis_preset}'). Set weights_path to a torchvision raft_large state dict to use RAFT."
        )
        return DISFlowBackend(channels=config.embedding_channels, preset=config.dis_preset)

    CONSOLE.log(f"Optical flow: using {variant} with weights {weights_file}.")
    return RAFTFlowBackend.from_weights_file(
        variant,
        weights_file,
        channels=config.embedding_channels,
        num_flow_updates=config.num_flow_updates,
        device=config.device,
    )
