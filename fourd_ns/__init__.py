"""fourd_ns: 4D (dynamic-scene) reconstruction methods for nerfstudio.

Importing the package (every ``ns-*`` command does, through our entry points) applies the process-wide fixes that
nerfstudio 1.1.5 needs: checkpoints that load under torch >= 2.6 (:mod:`fourd_ns.torch_load_compat`) and
``ns-render`` paths that sweep time from 0 to 1 (:mod:`fourd_ns.render_path_compat`).
"""

from fourd_ns.render_path_compat import sweep_time_along_render_paths
from fourd_ns.torch_load_compat import allow_numpy_scalars_in_checkpoints

allow_numpy_scalars_in_checkpoints()
sweep_time_along_render_paths()

__version__ = "0.1.0"
