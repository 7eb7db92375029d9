"""Casual video → Nerfies-format dataset (``fourd-process-video``).

Modules, in the order the data flows through them:

- ``frame_selection`` / ``frame_source``: decode a video (PyAV) or read an image folder, choose frames
  (``--start/--end`` as frame indices or seconds, ``--stride`` or ``--num-frames``), resize to ``--long-side``;
- ``dynamic_masks``: moving regions from DIS flow that breaks the static scene's two-view geometry (F or a
  homography, chosen by GRIC, fitted with MAGSAC++);
- ``colmap_poses`` (pycolmap SfM with the masks as feature masks) or ``flow4r_poses`` (anchored Flow4R
  reconstruction), both returning a typed ``camera_solution.CameraSolution``;
- ``scene_bounds`` (scene.json), ``frame_split`` (train / held-out ids), ``nerfies_writer`` (the dataset),
  ``output_folder`` (never touching the input or the user's other files), ``processing_report``;
- ``process``: the ``ProcessVideoConfig`` (the CLI) and ``process_video`` running the stages.
"""

from fourd_ns.video.errors import VideoProcessingError
from fourd_ns.video.process import ProcessVideoConfig, process_video

__all__ = ["ProcessVideoConfig", "VideoProcessingError", "process_video"]
