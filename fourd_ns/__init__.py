"""fourd_ns: 4D (dynamic-scene) reconstruction methods for nerfstudio.

Importing the package (every ``ns-*`` command does, through our entry points) applies the one process-wide fix
that nerfstudio 1.1.5 needs under torch >= 2.6: see :mod:`fourd_ns.torch_load_compat`.
"""

from fourd_ns.torch_load_compat import allow_numpy_scalars_in_checkpoints

allow_numpy_scalars_in_checkpoints()

__version__ = "0.1.0"
