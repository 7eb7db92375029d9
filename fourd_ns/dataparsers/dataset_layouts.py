"""Recognise which of our dataparsers reads a folder, so that the wrong one says which to use instead.

``ns-train <method> --data <folder>`` without a dataparser subcommand uses the method's default (``nerfies-data`` for
deform4d and flag4d, ``pandaset-data`` for g3r and flux4d). Given the other layout, each parser would only list the
files it misses; with :class:`WrongDataparserError` it names the dataparser that reads the folder and the command.
The tests are on folder structure only (nothing is read):

- a Nerfies-format capture has ``dataset.json`` (and ``metadata.json``, ``scene.json``, ``camera/<id>.json``);
- a PandaSet log has ``lidar/`` and ``camera/<name>/`` folders (``camera/front_camera/poses.json`` ...).
"""

from __future__ import annotations

from pathlib import Path


def is_nerfies_capture(folder: Path) -> bool:
    """Whether ``folder`` has the index file of a Nerfies / HyperNeRF / NeRF-DS capture."""
    return (Path(folder) / "dataset.json").is_file()


def is_pandaset_log(folder: Path) -> bool:
    """Whether ``folder`` has the ``lidar/`` folder and per-camera folders of a PandaSet sequence."""
    camera_root = Path(folder) / "camera"
    return (Path(folder) / "lidar").is_dir() and camera_root.is_dir() and any(p.is_dir() for p in camera_root.iterdir())


class WrongDataparserError(ValueError):
    """``folder`` holds a dataset of another layout than the dataparser that was asked to read it.

    The message gives the command with the right dataparser; ``ns-train`` knows the method, the dataparser does not,
    so :meth:`for_method` fills it in (``<method>`` until then).
    """

    def __init__(self, folder: Path, layout: str, dataparser: str, refused_by: str, method: str = "<method>") -> None:
        self.folder, self.layout, self.dataparser, self.refused_by = Path(folder), layout, dataparser, refused_by
        super().__init__(
            f"{folder} looks like a {layout}, which {refused_by} does not read; use "
            f"`ns-train {method} [method options] {dataparser} --data {folder}` (a dataparser subcommand after the "
            f"method's options; without one, ns-train uses the method's default dataparser)"
        )

    def for_method(self, method: str) -> "WrongDataparserError":
        """The same error with ``method`` in the suggested command."""
        return WrongDataparserError(self.folder, self.layout, self.dataparser, self.refused_by, method)
