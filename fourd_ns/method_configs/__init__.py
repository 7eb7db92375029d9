"""nerfstudio ``MethodSpecification`` objects (wiring only; the entry points of ``nerfstudio.method_configs``).

Method modules are imported by every ``ns-*`` command (nerfstudio discovers plugins at import time), which makes
this the place to hand mediapy a bundled ffmpeg so that ``ns-render`` can write videos in a pip-only environment.
"""

from fourd_ns.ffmpeg_compat import use_bundled_ffmpeg_if_missing

use_bundled_ffmpeg_if_missing()
