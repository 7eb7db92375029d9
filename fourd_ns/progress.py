"""The progress bar of long library work (optical flow, rendering, sequence inference): nerfstudio's console, a
bold blue title, bar, done/total and time remaining, removed when finished."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from nerfstudio.utils.rich_utils import CONSOLE


def progress_bar(title: str, disable: bool = False) -> Progress:
    """A transient rich ``Progress`` titled ``title`` (rich markup; braces are rich format fields) on nerfstudio's
    ``CONSOLE``; use it as a context manager and add one task with a ``total``."""
    return Progress(
        TextColumn(f"[bold blue]{title}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=CONSOLE,
        transient=True,
        disable=disable,
    )
