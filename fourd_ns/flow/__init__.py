"""Optical-flow backends and the cached per-frame flow embeddings that FLAG-4D's Global Motion Network consumes.

``select_flow_backend`` picks torchvision RAFT (weights from a local file or torch's hub cache, never downloaded) or
the weight-free OpenCV DIS fallback; ``load_or_compute_flow_embeddings`` runs it over a video once and caches the
result in the run's output folder.
"""

from fourd_ns.flow.backend import FlowBackend, PairFlow
from fourd_ns.flow.cache import flow_cache_key, load_or_compute_flow_embeddings
from fourd_ns.flow.config import FlowEmbeddingConfig, select_flow_backend
from fourd_ns.flow.embeddings import FlowEmbeddings, compute_flow_embeddings

__all__ = [
    "FlowBackend",
    "FlowEmbeddingConfig",
    "FlowEmbeddings",
    "PairFlow",
    "compute_flow_embeddings",
    "flow_cache_key",
    "load_or_compute_flow_embeddings",
    "select_flow_backend",
]
