"""Run an initializer once per training run and keep its result in the run's output folder.

The pattern of :mod:`fourd_ns.flow.cache`: the file name carries a key hashed from everything that determines the
result — the initializer's identity (its name, every setting, and for feed-forward initializers the weights file's
path, size and modification time), the dataset key, the frames' uint8 pixels, their times, the known cameras, the
scene box, the dataset's points and the file-format version. Any change computes a new file; a file whose stored key
or version does not match (a truncated hash collision, an older format) is ignored and recomputed.

Results are stored as ``.npz`` (numpy's portable format, no pickling) and written through a temporary file and a
rename, so an interrupted run never leaves a truncated cache. Only the run's output folder is ever written to.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from nerfstudio.utils.rich_utils import CONSOLE

from fourd_ns.initializers.base import Initializer, InitializerInputs, InitializerResult

CACHE_FORMAT_VERSION = 1
_OPTIONAL_FIELDS = ("point_times", "velocities", "camera_to_worlds", "intrinsics")


def tensor_digest(tensor: Optional[Tensor]) -> Optional[str]:
    """SHA-256 of a tensor's dtype, shape and bytes (None for None)."""
    if tensor is None:
        return None
    array = tensor.detach().cpu().contiguous().numpy()
    digest = hashlib.sha256(f"{array.dtype}|{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def initialization_cache_key(initializer: Initializer, inputs: InitializerInputs) -> str:
    """Hex key of every input that changes the result (see the module docstring)."""
    cameras = inputs.cameras
    fields = {
        "format_version": CACHE_FORMAT_VERSION,
        "initializer": initializer.identity(),
        "source": inputs.source,
        "frames_sha256": [tensor_digest(frame) for frame in inputs.frames_uint8()],
        "times": [float(t) for t in inputs.times.double()],
        "scene_box": tensor_digest(inputs.scene_box.float()),
        "dataset_points": tensor_digest(inputs.dataset_points),
        "dataset_colors": tensor_digest(inputs.dataset_colors),
        "cameras": None
        if cameras is None
        else [
            tensor_digest(cameras.camera_to_worlds.float()),
            tensor_digest(cameras.get_intrinsics_matrices().float()),
            tensor_digest(cameras.width),
            tensor_digest(cameras.height),
        ],
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def cache_file(cache_dir: Path, initializer: Initializer, key: str) -> Path:
    """Where the result for ``key`` lives in ``cache_dir``."""
    return Path(cache_dir) / f"initialization_{initializer.name}_{key[:20]}.npz"


def save_initialization(result: InitializerResult, path: Path, key: str) -> None:
    arrays = {"points": result.points.float().numpy(), "colors": result.colors.numpy()}
    for name in _OPTIONAL_FIELDS:
        value = getattr(result, name)
        if value is not None:
            arrays[name] = value.float().numpy()
    arrays["key"] = np.array(key)
    arrays["format_version"] = np.array(CACHE_FORMAT_VERSION)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=".initialization_", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)


def load_initialization(path: Path, key: str) -> Optional[InitializerResult]:
    """The cached result, or None when the file belongs to another key or format version."""
    with np.load(path, allow_pickle=False) as data:
        if str(data["key"]) != key or int(data["format_version"]) != CACHE_FORMAT_VERSION:
            return None
        optional = {name: torch.from_numpy(data[name]) if name in data else None for name in _OPTIONAL_FIELDS}
        return InitializerResult(
            points=torch.from_numpy(data["points"]), colors=torch.from_numpy(data["colors"]), **optional
        )


def load_or_compute_initialization(
    initializer: Initializer,
    inputs: InitializerInputs,
    cache_dir: Optional[Path],
    device: torch.device | str = "cpu",
) -> InitializerResult:
    """The initializer's result for ``inputs``: from ``cache_dir`` when computed before, else computed and saved there.

    Args:
        initializer: what to run.
        inputs: the training data.
        cache_dir: the run's output folder (the only place this writes); None computes without caching.
        device: where the initializer may run a network.
    """
    if cache_dir is None:
        CONSOLE.log(f"Initializer '{initializer.name}': no run folder given, so the result is not cached.")
        return initializer.initialize(inputs, device)
    key = initialization_cache_key(initializer, inputs)
    path = cache_file(Path(cache_dir), initializer, key)
    if path.is_file():
        cached = load_initialization(path, key)
        if cached is not None:
            CONSOLE.log(f"Initializer '{initializer.name}': loaded {cached.num_points} seed points from {path}")
            return cached
    result = initializer.initialize(inputs, device)
    save_initialization(result, path, key)
    CONSOLE.log(f"Initializer '{initializer.name}': saved {result.num_points} seed points to {path}")
    return result
