"""The one error ``fourd-process-video`` stops with: the message names the file or setting at fault and what to try."""

from __future__ import annotations


class VideoProcessingError(ValueError):
    """A video or image folder cannot be turned into a dataset as asked; nothing in the input was changed."""
