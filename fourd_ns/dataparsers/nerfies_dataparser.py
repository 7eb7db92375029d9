"""Dataparser for Nerfies-format captures: Nerfies, HyperNeRF (vrig / interp) and NeRF-DS.

Unlike nerfstudio's ``dycheck-data`` it needs no ``extra.json`` / ``splits/``, keeps the dataset's world axes
(no permutation), honours principal point, pixel aspect ratio and lens distortion, normalises times over all
ids to [0, 1] (time id / largest time id; ``metadata["time_axis"]`` is the matching
:class:`~fourd_ns.dataparsers.time_axis.TimeAxis`) and never writes into the dataset folder.

Optional extras, passed through ``metadata`` as file lists aligned with the split's image order when their
folder exists at the chosen downscale (a folder without any file for the split is skipped with a log line,
e.g. NeRF-DS has masks for training views only):

- ``resized_mask/<N>x/<id>.png.png`` (or ``<id>.png``): NeRF-DS moving-object masks, moving object = 0.
  NeRF-DS ships them for training views only, so frames without one get ``None`` in the list.
- ``depth/<N>x/<id>.npy``: float32 [H, W] z-depth in dataset world units (our synthetic generator).
- ``dynamic_mask/<N>x/<id>.png``: uint8 [H, W], 255 = dynamic (synthetic generator).
- ``flow/<N>x/<id>.npy``: float32 [H, W, 2] optical flow in pixels (synthetic generator).
- ``scene_flow/<N>x/<id>.npy``: float32 [H, W, 3] scene flow in dataset world units (synthetic generator).

None of them go into ``DataparserOutputs.mask_filenames``: they are not loss masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Sequence, Tuple, Type

import numpy as np
import torch

from fourd_ns.dataparsers.nerfies_format import (
    NerfiesCamera,
    NerfiesDataError,
    check_image,
    load_camera,
    load_rgb,
    problems_error,
    read_image_size,
    read_json,
)
from fourd_ns.dataparsers.dataset_layouts import WrongDataparserError, is_pandaset_log
from fourd_ns.dataparsers.time_axis import TIME_AXIS_KEY, TimeAxis
from fourd_ns.geometry.camera_conventions import (
    nerfies_normalisation_transform,
    nerfies_to_c2w_opengl,
    normalise_points,
)
from fourd_ns.geometry.opencv_projection import project_points_opencv
from nerfstudio.cameras import camera_utils
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.utils.rich_utils import CONSOLE

__all__ = ["NerfiesDataError", "NerfiesDataParser", "NerfiesDataParserConfig"]

# Grey for seed points that no colouring view sees.
UNSEEN_POINT_RGB = 128


@dataclass
class NerfiesDataParserConfig(DataParserConfig):
    """Nerfies / HyperNeRF / NeRF-DS capture (dataset.json, metadata.json, scene.json, camera/, rgb/<N>x/)."""

    _target: Type = field(default_factory=lambda: NerfiesDataParser)
    data: Path = Path()
    """Capture folder holding dataset.json, metadata.json, scene.json, camera/ and rgb/<N>x/."""
    downscale_factor: int = 1
    """Read images from rgb/<N>x; intrinsics and image size from the 1x camera JSON are divided by N."""
    time_key: str = "time_id"
    """metadata.json field used as the frame time; 'time_id' falls back to 'warp_id' (older captures)."""
    split: Literal["dataset", "interp", "explicit"] = "dataset"
    """dataset: train_ids / val_ids of dataset.json (NeRF-DS, HyperNeRF vrig). interp: train on ids[::4],
    test on ids[2::4] (HyperNeRF interp). explicit: the train_ids / test_ids options below."""
    train_ids: Tuple[str, ...] = ()
    """Training frame ids when split is 'explicit'."""
    test_ids: Tuple[str, ...] = ()
    """Evaluation frame ids when split is 'explicit'."""
    load_points: bool = True
    """Seed points from points.npy (metadata points3D_xyz / points3D_rgb, read by splatfacto-style models)."""
    seed_color_views: int = 4
    """Colour each seed point from the first of this many training images that sees it (grey if none)."""
    load_depth: bool = True
    """Pass depth/<N>x/*.npy through metadata when present."""
    load_masks: bool = True
    """Pass NeRF-DS resized_mask/ and synthetic dynamic_mask/ through metadata when present."""
    load_flow: bool = True
    """Pass synthetic flow/<N>x and scene_flow/<N>x through metadata when present."""
    distortion: Literal["undistort", "refuse"] = "undistort"
    """undistort: give cameras their distortion coefficients so nerfstudio's full-image datamanager undistorts
    images (ray-based models undistort rays). refuse: stop with an error on any non-zero coefficient."""
    scene_box_bound: Optional[float] = None
    """Half side of the cubic scene box in normalised units; None derives it from camera centres and points."""
    scene_box_margin: float = 1.1
    """Factor applied to the derived scene box half side."""


@dataclass
class NerfiesDataParser(DataParser):
    """Reads a Nerfies-format capture into nerfstudio cameras with times in [0, 1]."""

    config: NerfiesDataParserConfig
    includes_time: bool = True

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        root = self.config.data
        _require_files(root, ["dataset.json", "metadata.json", "scene.json"])
        dataset = read_json(root / "dataset.json")
        frames = read_json(root / "metadata.json")
        scene = read_json(root / "scene.json")
        all_ids = _all_ids(dataset, root)
        split_ids = _split_ids(self.config, dataset, all_ids, split, root)

        time_key = _resolve_time_key(self.config.time_key, frames, all_ids, root)
        last_time_id = max(frames[i][time_key] for i in all_ids)
        time_ids = np.array([frames[i][time_key] for i in split_ids], dtype=np.int64)
        times = time_ids / last_time_id if last_time_id > 0 else np.zeros(len(split_ids))

        downscale = self.config.downscale_factor
        rgb_dir = _rgb_dir(root, downscale)
        camera_paths = [root / "camera" / f"{i}.json" for i in split_ids]
        image_paths = [rgb_dir / f"{i}.png" for i in split_ids]
        missing = [str(p) for p in camera_paths + image_paths if not p.is_file()]
        if missing:
            raise problems_error(f"Missing files for the '{split}' split", missing)
        cameras_json = [load_camera(p) for p in camera_paths]
        _check_lens(cameras_json, self.config.distortion)
        image_problems = [
            problem
            for camera, path in zip(cameras_json, image_paths)
            for problem in check_image(path, _scaled_size(camera, downscale))
        ]
        if image_problems:
            raise problems_error(f"Bad images in {rgb_dir}", image_problems)

        try:
            center = torch.tensor(scene["center"], dtype=torch.float64).reshape(3)
            scale = float(scene["scale"])
            near, far = float(scene.get("near", 0.0)), float(scene.get("far", 0.0))
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise NerfiesDataError(f"scene.json in {root} needs 'center' [3] and 'scale': {error}") from error

        cameras = _build_cameras(cameras_json, image_paths, downscale, center, scale, times)
        metadata: Dict[str, object] = {
            "frame_ids": list(split_ids),
            "time_ids": torch.from_numpy(time_ids),
            "time_key": time_key,
            "time_offset": 0.0,
            TIME_AXIS_KEY: TimeAxis.evenly_spaced(last_time_id + 1),
            "scene_center": center.float(),
            "scene_scale": scale,
            "near": near,
            "far": far,
        }
        if "camera_id" in frames[split_ids[0]]:
            metadata["camera_ids"] = torch.tensor([int(frames[i].get("camera_id", -1)) for i in split_ids])
        points = None
        if self.config.load_points:
            points = _load_points(root, center, scale)
            metadata["points3D_xyz"] = points.float()
            metadata["points3D_rgb"] = _color_points(
                points,
                cameras_json[: self.config.seed_color_views],
                image_paths[: self.config.seed_color_views],
                downscale,
                center,
                scale,
            )
        metadata.update(_extras(self.config, root, split_ids, has_distortion=cameras.distortion_params is not None))

        return DataparserOutputs(
            image_filenames=image_paths,
            cameras=cameras,
            scene_box=_scene_box(self.config, cameras.camera_to_worlds[:, :, 3], points),
            metadata=metadata,
            dataparser_transform=nerfies_normalisation_transform(center).float(),
            dataparser_scale=scale,
        )


def _require_files(root: Path, names: Sequence[str]) -> None:
    if not root.is_dir():
        raise NerfiesDataError(f"Dataset folder {root} does not exist")
    missing = [str(root / name) for name in names if not (root / name).is_file()]
    if missing and is_pandaset_log(root):
        raise WrongDataparserError(root, "PandaSet log", "pandaset-data", refused_by="nerfies-data")
    if missing:
        raise problems_error(f"Not a Nerfies-format capture, missing files in {root}", missing)


def _all_ids(dataset: dict, root: Path) -> List[str]:
    if not isinstance(dataset, dict) or not dataset.get("ids"):
        raise NerfiesDataError(f"{root / 'dataset.json'} has no non-empty 'ids' list")
    return [str(i) for i in dataset["ids"]]


def _split_ids(config: NerfiesDataParserConfig, dataset: dict, all_ids: List[str], split: str, root: Path) -> List[str]:
    """Frame ids of nerfstudio split ``split`` ('train', or 'val'/'test', which share the evaluation ids)."""
    is_train = split == "train"
    if config.split == "dataset":
        field_name = "train_ids" if is_train else "val_ids"
        source = f"{root / 'dataset.json'} field '{field_name}'"
        ids = [str(i) for i in dataset.get(field_name) or []]
    elif config.split == "interp":
        source = f"interp split ({'ids[::4]' if is_train else 'ids[2::4]'} of {root / 'dataset.json'})"
        ids = all_ids[::4] if is_train else all_ids[2::4]
    else:
        field_name = "train_ids" if is_train else "test_ids"
        source = f"explicit split option '{field_name}'"
        ids = list(config.train_ids if is_train else config.test_ids)
    if not ids:
        raise NerfiesDataError(f"The '{split}' split is empty: {source} has no ids")
    unknown = sorted(set(ids) - set(all_ids))
    if unknown:
        raise problems_error(f"Ids of {source} are not in the 'ids' of {root / 'dataset.json'}", unknown)
    return ids


def _resolve_time_key(time_key: str, frames: dict, all_ids: List[str], root: Path) -> str:
    """The metadata.json field holding times; 'time_id' falls back to 'warp_id' as the Nerfies code does."""
    path = root / "metadata.json"
    missing_ids = [i for i in all_ids if i not in frames]
    if missing_ids:
        raise problems_error(f"Ids of dataset.json have no entry in {path}", missing_ids)
    if time_key == "time_id" and all("time_id" not in frames[i] for i in all_ids):
        CONSOLE.log(f"[yellow]{path} has no 'time_id'; using 'warp_id' as the frame time.")
        time_key = "warp_id"
    without_key = [i for i in all_ids if not isinstance(frames[i].get(time_key), int)]
    if without_key:
        raise problems_error(f"Entries of {path} without an integer '{time_key}'", without_key)
    negative = [i for i in all_ids if frames[i][time_key] < 0]
    if negative:
        raise problems_error(f"Entries of {path} with a negative '{time_key}' (time ids count from 0)", negative)
    return time_key


def _rgb_dir(root: Path, downscale: int) -> Path:
    rgb_dir = root / "rgb" / f"{downscale}x"
    if not rgb_dir.is_dir():
        available = sorted(p.name for p in (root / "rgb").glob("*x") if p.is_dir())
        raise NerfiesDataError(
            f"Image folder {rgb_dir} does not exist (downscale_factor={downscale}); "
            f"available: {', '.join(available) or 'none'} in {root / 'rgb'}"
        )
    return rgb_dir


def _scaled_size(camera: NerfiesCamera, downscale: int) -> Tuple[int, int]:
    width, height = camera.image_size
    return round(width / downscale), round(height / downscale)


def _check_lens(cameras: Sequence[NerfiesCamera], distortion: str) -> None:
    """nerfstudio cameras have no skew, and 'refuse' forbids distortion: never drop coefficients silently."""
    skewed = [f"{c.path}: skew={c.skew}" for c in cameras if c.skew != 0]
    if skewed:
        raise problems_error("Non-zero camera skew is not supported by nerfstudio cameras", skewed)
    if distortion == "refuse":
        distorted = [
            f"{c.path}: radial_distortion={c.radial_distortion.tolist()}, "
            f"tangential_distortion={c.tangential_distortion.tolist()}"
            for c in cameras
            if c.has_distortion
        ]
        if distorted:
            raise problems_error("Lens distortion present but distortion='refuse'", distorted)


def _build_cameras(
    cameras_json: Sequence[NerfiesCamera],
    image_paths: Sequence[Path],
    downscale: int,
    center: torch.Tensor,
    scale: float,
    times: np.ndarray,
) -> Cameras:
    """nerfstudio cameras at the chosen downscale; width/height from the image files (Nerfies rounds)."""
    orientation = torch.tensor(np.stack([c.orientation for c in cameras_json]), dtype=torch.float64)
    position = normalise_points(torch.tensor(np.stack([c.position for c in cameras_json])), center, scale)
    sizes = torch.tensor([read_image_size(p) for p in image_paths])
    focal = torch.tensor([c.focal_length for c in cameras_json], dtype=torch.float64) / downscale
    aspect = torch.tensor([c.pixel_aspect_ratio for c in cameras_json], dtype=torch.float64)
    principal = torch.tensor(np.stack([c.principal_point for c in cameras_json])) / downscale
    distortion_params = None
    if any(c.has_distortion for c in cameras_json):
        distortion_params = torch.stack(
            [
                camera_utils.get_distortion_params(
                    k1=float(c.radial_distortion[0]),
                    k2=float(c.radial_distortion[1]),
                    k3=float(c.radial_distortion[2]),
                    p1=float(c.tangential_distortion[0]),
                    p2=float(c.tangential_distortion[1]),
                )
                for c in cameras_json
            ]
        )
    return Cameras(
        camera_to_worlds=nerfies_to_c2w_opengl(orientation, position).float(),
        fx=focal[:, None].float(),
        fy=(focal * aspect)[:, None].float(),
        cx=principal[:, 0:1].float(),
        cy=principal[:, 1:2].float(),
        width=sizes[:, 0:1],
        height=sizes[:, 1:2],
        distortion_params=distortion_params,
        camera_type=CameraType.PERSPECTIVE,
        times=torch.tensor(times, dtype=torch.float32)[:, None],
    )


def _load_points(root: Path, center: torch.Tensor, scale: float) -> torch.Tensor:
    """points.npy [N, 3] in normalised coordinates, float64."""
    path = root / "points.npy"
    if not path.is_file():
        raise NerfiesDataError(f"Missing file {path} (set load_points False to train without seed points)")
    try:
        points = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise NerfiesDataError(f"Unreadable point file {path}: {error}") from error
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise NerfiesDataError(f"{path} must hold an [N, 3] array with N > 0, got shape {points.shape}")
    return normalise_points(torch.from_numpy(points.astype(np.float64)), center, scale)


def _color_points(
    points: torch.Tensor,
    cameras_json: Sequence[NerfiesCamera],
    image_paths: Sequence[Path],
    downscale: int,
    center: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """uint8 [N, 3] colours sampled where each point projects in the first image that sees it.

    Occlusion is not modelled (points.npy has no visibility), so a point hidden behind another takes the
    occluder's colour; this only affects the initial colour of splatfacto-style seeds.
    """
    world_points = (points / scale + center).numpy()
    colors = np.full((len(world_points), 3), UNSEEN_POINT_RGB, dtype=np.uint8)
    unseen = np.ones(len(world_points), dtype=bool)
    for camera, path in zip(cameras_json, image_paths):
        image = load_rgb(path)
        height, width = image.shape[:2]
        pixels, depth = project_points_opencv(
            world_points,
            camera.orientation,
            camera.position,
            focal=(camera.focal_length / downscale, camera.focal_length * camera.pixel_aspect_ratio / downscale),
            principal_point=tuple(camera.principal_point / downscale),
            radial=tuple(camera.radial_distortion),
            tangential=tuple(camera.tangential_distortion),
        )
        # Pixel (i, j) covers [j, j + 1) x [i, i + 1): pixel centres are at half-integers.
        columns, rows = np.floor(pixels[:, 0]).astype(np.int64), np.floor(pixels[:, 1]).astype(np.int64)
        visible = unseen & (depth > 0) & (columns >= 0) & (columns < width) & (rows >= 0) & (rows < height)
        colors[visible] = image[rows[visible], columns[visible]]
        unseen &= ~visible
    return torch.from_numpy(colors)


def _extras(config: NerfiesDataParserConfig, root: Path, split_ids: Sequence[str], has_distortion: bool) -> dict:
    """File lists of the optional per-frame extras present at this downscale (see the module docstring)."""
    scale_dir = f"{config.downscale_factor}x"
    # (metadata key, folder, accepted suffixes, whether frames may lack a file)
    wanted = []
    if config.load_depth:
        wanted.append(("depth_filenames", root / "depth" / scale_dir, (".npy",), False))
    if config.load_masks:
        wanted.append(("nerfds_mask_filenames", root / "resized_mask" / scale_dir, (".png.png", ".png"), True))
        wanted.append(("dynamic_mask_filenames", root / "dynamic_mask" / scale_dir, (".png",), False))
    if config.load_flow:
        wanted.append(("flow_filenames", root / "flow" / scale_dir, (".npy",), False))
        wanted.append(("scene_flow_filenames", root / "scene_flow" / scale_dir, (".npy",), False))
    extras: dict = {}
    for key, folder, suffixes, allow_partial in wanted:
        files = _extra_files(folder, split_ids, suffixes, allow_partial)
        if files is not None:
            extras[key] = files
    if "depth_filenames" in extras:
        # Depth is in dataset world units; nerfstudio's DepthDataset multiplies by
        # depth_unit_scale_factor * dataparser_scale, and dataparser_scale already is the scene scale.
        extras["depth_unit_scale_factor"] = 1.0
    if extras and has_distortion:
        CONSOLE.log(
            f"[yellow]{', '.join(sorted(extras))} are not undistorted: they stay aligned with the distorted "
            "images, not with nerfstudio's undistorted ones."
        )
    return extras


def _extra_files(
    folder: Path, split_ids: Sequence[str], suffixes: Sequence[str], allow_partial: bool
) -> Optional[List[Optional[Path]]]:
    """One file per id, or None when the folder has none of them. A partial set is an error unless
    ``allow_partial``, where frames without a file get None."""
    if not folder.is_dir():
        return None
    found: List[Optional[Path]] = []
    for frame_id in split_ids:
        candidates = [folder / f"{frame_id}{suffix}" for suffix in suffixes]
        found.append(next((c for c in candidates if c.is_file()), None))
    if all(f is None for f in found):
        CONSOLE.log(f"{folder} has no file for this split; skipping it.")
        return None
    missing = [str(folder / f"{i}{suffixes[0]}") for i, f in zip(split_ids, found) if f is None]
    if missing and not allow_partial:
        raise problems_error(f"{folder} lacks files for some frames of the split", missing)
    if missing:
        CONSOLE.log(f"{folder} has files for {len(split_ids) - len(missing)} of {len(split_ids)} frames.")
    return found


def _scene_box(
    config: NerfiesDataParserConfig, camera_centres: torch.Tensor, points: Optional[torch.Tensor]
) -> SceneBox:
    """Cube centred on the origin of the normalised scene. Derived bound: the farthest camera centre or the
    99th percentile of seed point coordinates (robust to stray points), times the margin."""
    bound = config.scene_box_bound
    if bound is None:
        extent = float(camera_centres.abs().max())
        if points is not None:
            extent = max(extent, float(torch.quantile(points.abs().max(dim=1).values.float(), 0.99)))
        bound = config.scene_box_margin * extent
    return SceneBox(aabb=torch.tensor([[-bound] * 3, [bound] * 3], dtype=torch.float32))
