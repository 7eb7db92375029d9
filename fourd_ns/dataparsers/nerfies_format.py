"""Reading and validating the files of a Nerfies / HyperNeRF / NeRF-DS capture.

Everything here is read-only: the dataset folder is never written to. Problems are collected and raised
together as one :class:`NerfiesDataError` so a user fixes a broken capture in one pass instead of one file
per run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

# Nerfies downscales with rounding, so an image at rgb/<N>x may differ by one pixel from image_size / N.
IMAGE_SIZE_TOLERANCE_PX = 1


class NerfiesDataError(ValueError):
    """A Nerfies-format dataset is incomplete or inconsistent; the message names the files at fault."""


def problems_error(summary: str, problems: Sequence[str]) -> NerfiesDataError:
    """One error listing every problem, one per line."""
    return NerfiesDataError(summary + ":\n  " + "\n  ".join(problems))


def read_json(path: Path) -> Any:
    """Parse a JSON file, turning a missing or malformed file into a :class:`NerfiesDataError` naming it."""
    if not path.is_file():
        raise NerfiesDataError(f"Missing file {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise NerfiesDataError(f"Malformed JSON in {path}: {error}") from error


@dataclass(frozen=True)
class NerfiesCamera:
    """One ``camera/<id>.json``; intrinsics in pixels at 1x, pose in the dataset's (unnormalised) world frame."""

    path: Path
    orientation: np.ndarray  # [3, 3] world-to-camera rotation, OpenCV camera axes
    position: np.ndarray  # [3] camera centre
    focal_length: float
    principal_point: np.ndarray  # [2] (cx, cy)
    skew: float
    pixel_aspect_ratio: float
    radial_distortion: np.ndarray  # [3] (k1, k2, k3)
    tangential_distortion: np.ndarray  # [2] (p1, p2)
    image_size: Tuple[int, int]  # (W, H)

    @property
    def has_distortion(self) -> bool:
        return bool(np.any(self.radial_distortion != 0) or np.any(self.tangential_distortion != 0))


def _vector(data: Dict[str, Any], key: str, length: int, path: Path, default: Any = None) -> np.ndarray:
    value = data.get(key, default)
    if value is None:
        raise NerfiesDataError(f"Camera file {path} has no '{key}' field")
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.shape != (length,):
        raise NerfiesDataError(f"Camera file {path}: '{key}' must have {length} values, got {value!r}")
    return array


def load_camera(path: Path) -> NerfiesCamera:
    """Read one camera JSON. Tangential distortion is accepted under ``tangential_distortion`` (HyperNeRF)
    or the older ``tangential`` (Nerfies); absent distortion fields mean zero, as in the Nerfies code."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise NerfiesDataError(f"Camera file {path} must hold a JSON object")
    tangential = data.get("tangential_distortion", data.get("tangential", [0.0, 0.0]))
    try:
        focal_length = float(data["focal_length"])
        image_size = _vector(data, "image_size", 2, path)
        return NerfiesCamera(
            path=path,
            orientation=_vector(data, "orientation", 9, path).reshape(3, 3),
            position=_vector(data, "position", 3, path),
            focal_length=focal_length,
            principal_point=_vector(data, "principal_point", 2, path),
            skew=float(data.get("skew", 0.0)),
            pixel_aspect_ratio=float(data.get("pixel_aspect_ratio", 1.0)),
            radial_distortion=_vector(data, "radial_distortion", 3, path, default=[0.0, 0.0, 0.0]),
            tangential_distortion=_vector({"tangential": tangential}, "tangential", 2, path),
            image_size=(int(round(image_size[0])), int(round(image_size[1]))),
        )
    except NerfiesDataError:
        raise
    except KeyError as error:
        raise NerfiesDataError(f"Camera file {path} has no {error} field") from error
    except (TypeError, ValueError) as error:
        raise NerfiesDataError(f"Camera file {path} has a non-numeric field: {error}") from error


def check_image(path: Path, expected_size: Tuple[int, int]) -> List[str]:
    """Problems with one image: unreadable/corrupt (Pillow header + verify) or size (W, H) off by > 1 px."""
    try:
        with Image.open(path) as image:
            size = image.size
            image.verify()
    except Exception as error:  # Pillow raises many unrelated types for corrupt files
        return [f"{path}: unreadable or corrupt image ({type(error).__name__}: {error})"]
    if any(abs(a - b) > IMAGE_SIZE_TOLERANCE_PX for a, b in zip(size, expected_size)):
        return [
            f"{path}: image is {size[0]}x{size[1]} (WxH) but its camera JSON implies "
            f"{expected_size[0]}x{expected_size[1]} at this downscale"
        ]
    return []


def read_image_size(path: Path) -> Tuple[int, int]:
    """(W, H) of an image already validated by :func:`check_image`."""
    with Image.open(path) as image:
        return image.size


def load_rgb(path: Path) -> np.ndarray:
    """[H, W, 3] uint8 colours, dropping alpha."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
