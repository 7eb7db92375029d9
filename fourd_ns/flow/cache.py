"""Compute flow embeddings once per dataset and backend, and keep them in the run's output folder.

The file name carries a key hashed from everything that determines the numbers — dataset key, the frames' pixel
content, the times, the backend and its weights file (path, size, mtime) or settings, the embedding width, the RAFT
iteration count and the file-format version — so a changed dataset, backend or checkpoint computes a new file instead
of silently reusing a stale one. Tensors are stored as fp16 (≈0.5 MB per 128-channel 34×60 map, §2.5 of the method
notes); freshly computed results go through the same fp16 rounding so a cache hit returns exactly what a miss did.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from nerfstudio.utils.rich_utils import CONSOLE

from fourd_ns.flow.backend import FlowBackend
from fourd_ns.flow.config import FlowEmbeddingConfig, select_flow_backend
from fourd_ns.flow.embeddings import FlowEmbeddings, Frames, check_times, compute_flow_embeddings, frames_to_uint8

CACHE_FORMAT_VERSION = 1
_TENSOR_FIELDS = ("past", "future", "flow_backward", "flow_forward")


def frames_content_hash(frames_uint8: Tensor) -> str:
    """SHA-256 of the uint8 pixels and their shape (what the backends actually see)."""
    digest = hashlib.sha256(str(tuple(frames_uint8.shape)).encode())
    digest.update(frames_uint8.contiguous().numpy().tobytes())
    return digest.hexdigest()


def flow_cache_key(frames_uint8: Tensor, times: Tensor, backend: FlowBackend, dataset_key: str) -> str:
    """Hex key of every input that changes the cached numbers (see the module docstring)."""
    fields = {
        "format_version": CACHE_FORMAT_VERSION,
        "dataset_key": dataset_key,
        "frames_sha256": frames_content_hash(frames_uint8),
        "times": [float(t) for t in times.double()],
        "backend": backend.name,
        "backend_identity": backend.identity(),
        "embedding_channels": backend.channels,
        "stride": backend.stride,
        "num_flow_updates": getattr(backend, "num_flow_updates", None),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _through_fp16(embeddings: FlowEmbeddings) -> FlowEmbeddings:
    rounded = {name: getattr(embeddings, name).half().float() for name in _TENSOR_FIELDS}
    return FlowEmbeddings(**rounded, times=embeddings.times, stride=embeddings.stride)


def _save(embeddings: FlowEmbeddings, path: Path, key: str, backend_name: str) -> None:
    payload = {name: getattr(embeddings, name).half().contiguous() for name in _TENSOR_FIELDS}
    payload.update(times=embeddings.times, stride=embeddings.stride, key=key, backend=backend_name)
    payload["format_version"] = CACHE_FORMAT_VERSION
    # Write to a temporary file in the same folder, then rename: an interrupted run never leaves a truncated cache.
    handle, tmp_name = tempfile.mkstemp(prefix=".flow_embeddings_", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        torch.save(payload, tmp_name)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)


def _load(path: Path, key: str) -> Optional[FlowEmbeddings]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("key") != key or payload.get("format_version") != CACHE_FORMAT_VERSION:
        return None
    tensors = {name: payload[name].float() for name in _TENSOR_FIELDS}
    return FlowEmbeddings(**tensors, times=payload["times"].float(), stride=int(payload["stride"]))


def load_or_compute_flow_embeddings(
    frames: Frames,
    times,
    config: FlowEmbeddingConfig,
    cache_dir: Path,
    dataset_key: str,
    backend: Optional[FlowBackend] = None,
) -> FlowEmbeddings:
    """Flow embeddings of a time-ordered ``[T, H, W, 3]`` video, from ``cache_dir`` if computed before.

    Args:
        frames: RGB frames, float in [0, 1] or uint8, sorted by time.
        times: ``[T]`` strictly increasing frame times.
        config: which backend and settings (used to select the backend unless ``backend`` is given).
        cache_dir: the run's output folder; the only place this function writes.
        dataset_key: names the dataset (e.g. its path and split) so different datasets never share a file.
        backend: an already selected backend, to reuse one across calls.
    """
    video = frames_to_uint8(frames)
    times = check_times(times, video.shape[0])
    if backend is None:
        backend = select_flow_backend(config)
    key = flow_cache_key(video, times, backend, dataset_key)
    cache_dir = Path(cache_dir)
    path = cache_dir / f"flow_embeddings_{backend.name}_{key[:20]}.pt"
    if path.is_file():
        cached = _load(path, key)
        if cached is not None:
            CONSOLE.log(f"Loaded flow embeddings from {path}")
            return cached
    embeddings = _through_fp16(compute_flow_embeddings(video, times, backend))
    cache_dir.mkdir(parents=True, exist_ok=True)
    _save(embeddings, path, key, backend.name)
    CONSOLE.log(f"Saved flow embeddings ({backend.name}, {video.shape[0]} frames) to {path}")
    return embeddings
