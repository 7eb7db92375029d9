"""Let nerfstudio checkpoints that hold numpy scalars load under torch >= 2.6 (``weights_only=True`` default).

nerfstudio's ``ExponentialDecayScheduler`` computes learning rates with ``np.exp``, so ``numpy.float64`` values end
up in the optimizer and scheduler state it saves. ``ns-eval``, ``ns-viewer``, ``ns-export``, ``ns-render`` and
``ns-train --load-dir`` then fail with ``Unsupported global: GLOBAL numpy.core.multiarray.scalar``. Allow-listing
exactly those numpy types keeps ``weights_only`` loading (no arbitrary pickles) and needs no environment variable.
"""

from __future__ import annotations

import numpy as np
import torch


def allow_numpy_scalars_in_checkpoints() -> None:
    """Register the numpy scalar and dtype classes as safe globals for ``torch.load(weights_only=True)``."""
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:  # torch < 2.4 loads full pickles by default; nothing to do.
        return
    safe = [np.core.multiarray.scalar, np.dtype]
    # numpy >= 1.25 names dtype classes (np.dtypes.Float64DType); checkpoints pickle the class of each scalar's dtype.
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        safe += [getattr(dtypes, name) for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType")]
    add_safe_globals(safe)
