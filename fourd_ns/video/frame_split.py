"""Which frames of a processed video train and which are held out (``dataset.json`` train_ids / val_ids).

- ``interp`` (default): train on ids[::4], evaluate on ids[2::4] of the registered frames in time order — exactly
  nerfies-data's ``--split interp`` (HyperNeRF's interpolation protocol), so the default ``--split dataset`` of
  nerfies-data reads the same split from dataset.json. Frames 1 and 3 of every 4 are in neither set.
- ``holdout``: every ``holdout_every``-th frame, starting at frame ``holdout_every // 2``, is held out; every other
  frame trains (more training views than interp, for short or sparse videos).
"""

from __future__ import annotations

from typing import Literal, Sequence

from fourd_ns.video.errors import VideoProcessingError

SplitName = Literal["interp", "holdout"]


def split_frame_ids(ids: Sequence[str], split: SplitName, holdout_every: int = 8) -> tuple[list[str], list[str]]:
    """(train_ids, val_ids) of the registered ids (in time order) under ``split``; both non-empty."""
    ids = list(ids)
    if split == "interp":
        train, val = ids[::4], ids[2::4]
    elif split == "holdout":
        if holdout_every < 2:
            raise VideoProcessingError(f"--holdout-every must be at least 2, got {holdout_every}")
        held = set(ids[holdout_every // 2 :: holdout_every])
        train, val = [i for i in ids if i not in held], [i for i in ids if i in held]
    else:
        raise VideoProcessingError(f"--split {split!r} is not one of interp, holdout")
    if not train or not val:
        raise VideoProcessingError(
            f"--split {split} of {len(ids)} registered frames leaves {len(train)} training and {len(val)} held-out "
            "frames; both need at least one (use more frames or --split holdout with a smaller --holdout-every)"
        )
    return train, val
