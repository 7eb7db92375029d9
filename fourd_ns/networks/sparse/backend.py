"""Choice of sparse-convolution backend: ``torch`` (``conv_torch.py``, everywhere) or ``spconv`` (``conv_spconv.py``,
when the optional ``spconv`` package is installed). ``auto`` takes spconv for CUDA tensors when a CUDA build of
spconv is installed, and torch otherwise: spconv's CPU build runs forward passes only (its backward asks for a CUDA
stream), so it is never chosen automatically on the CPU.
"""

from __future__ import annotations

from functools import lru_cache
from types import ModuleType
from typing import Literal

import torch

Backend = Literal["torch", "spconv", "auto"]


@lru_cache(maxsize=None)
def spconv_installed() -> bool:
    """Whether ``spconv.pytorch`` can be imported."""
    try:
        import spconv.pytorch  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


@lru_cache(maxsize=None)
def spconv_has_cuda() -> bool:
    """Whether the installed spconv is a CUDA build (the unsuffixed PyPI package is CPU-only)."""
    if not spconv_installed():
        return False
    from spconv.cppconstants import CPU_ONLY_BUILD

    return not CPU_ONLY_BUILD


def resolve_backend(backend: Backend, device: torch.device) -> Literal["torch", "spconv"]:
    """The backend that runs for tensors on ``device``."""
    if backend == "auto":
        return "spconv" if device.type == "cuda" and spconv_has_cuda() else "torch"
    if backend == "spconv":
        if not spconv_installed():
            raise ImportError("sparse-conv backend 'spconv' requested but spconv is not installed: "
                              "pip install spconv (CPU, forward only) or spconv-cu126 (CUDA), or use backend='torch'")
        if device.type == "cuda" and not spconv_has_cuda():
            raise RuntimeError("the installed spconv is its CPU build and cannot run on CUDA tensors; install a CUDA "
                               "build (for example spconv-cu126) or use backend='torch'")
        return "spconv"
    if backend == "torch":
        return "torch"
    raise ValueError(f"unknown sparse-conv backend {backend!r}; choose 'torch', 'spconv' or 'auto'")


def backend_ops(backend: Backend, device: torch.device) -> ModuleType:
    """The module with ``submanifold_conv3d``, ``sparse_conv3d`` and ``sparse_inverse_conv3d`` for ``device``."""
    if resolve_backend(backend, device) == "spconv":
        from fourd_ns.networks.sparse import conv_spconv

        return conv_spconv
    from fourd_ns.networks.sparse import conv_torch

    return conv_torch
