"""An ``InputDataset`` that also returns the dataset's own depth maps as ``batch["depth_image"]``.

nerfstudio's ``DepthDataset`` would run a monocular depth network (downloading ZoeDepth) when a dataset has no depth
files; FLAG-4D's depth term must instead switch off in that case. This dataset only reads what the dataparser lists
in ``metadata["depth_filenames"]`` (``.npy`` float arrays, or 16-bit images scaled by ``depth_unit_scale_factor``)
and returns nothing extra otherwise.

A depth map whose size differs from its image (e.g. stored at another downscale) is resized with nearest-neighbour
sampling so no depth is invented across object boundaries. Non-finite or non-positive values mean "no depth" and
are stored as 0; the loss masks them out. The depth maps are read whenever the dataparser lists them, whichever
method trains (flag4d's depth term and deform4d's optional one read the same ``depth_image``).

An evaluation dataset (``load_dynamic_masks=True``, set by the fourd_ns datamanager for its eval split only) also
returns ``dynamic_mask`` ``[H, W]`` (bool, True = the pixel sees a moving object) when the dataparser lists
``metadata["dynamic_mask_filenames"]`` (the synthetic scenes' ``dynamic_mask/<N>x/*.png``, 255 = dynamic), for the
dynamic-region PSNR of `fourd_ns.models.image_metrics`. Training batches never carry it, so it cannot change
training.

Two additions for driving logs (``pandaset-data``), both driven by the dataparser's metadata:

* ``metadata["image_downscale_factor"] = f > 1``: ``image_filenames`` are the full-resolution originals while the
  cameras are already ``(W // f, H // f)``. Images are box-filtered to exactly that size when read (the
  datamanager caches them, so once per run); masks are reduced the same way, a pixel staying valid only when its
  whole block is. A file whose size // f differs from its camera is an error naming the file.
* driving LiDAR (``metadata["driving"].lidar`` with ``metadata["lidar_sweep_index"]``): each image also gets
  ``lidar_depth`` ``[H, W, 1]``, the camera z-depth of the nearest return of its sweep in scene units (0 = no
  return; all 0 when the index is -1), see `fourd_ns.sensors.lidar_projection`, and ``metres_per_unit`` (0-d).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Dict, Literal, Optional, Tuple

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from PIL import Image
from torch import Tensor

from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.data.utils.data_utils import get_image_mask_tensor_from_path

from fourd_ns.sensors.driving_metadata import DrivingMetadata, get_driving_metadata
from fourd_ns.sensors.lidar_projection import lidar_depth_map_for_camera


_NPY_HEADER_LOCK = threading.Lock()
"""nerfstudio caches images (and so calls `get_metadata`) from a thread pool; ``np.load`` parses the ``.npy`` header
with ``ast``, and CPython 3.11 (3.11.7 here) can fail concurrent ``ast`` parses with "SystemError: AST constructor
recursion depth mismatch" (seen in a benchmark run). Loading one file at a time costs nothing measurable."""


def read_depth_file(path: Path, unit_scale: float = 1.0) -> np.ndarray:
    """A ``[H, W]`` float32 depth map from ``.npy`` (values as stored) or an image (values × ``unit_scale``)."""
    path = Path(path)
    if path.suffix == ".npy":
        with _NPY_HEADER_LOCK:
            depth = np.load(path)
    else:
        from PIL import Image

        with Image.open(path) as image:
            depth = np.asarray(image).astype(np.float32) * unit_scale
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise ValueError(f"Depth map {path} has shape {depth.shape}; expected [H, W].")
    return depth


def read_dynamic_mask(path: Path, size: Tuple[int, int]) -> Bool[Tensor, "H W"]:
    """A dynamic-region mask (single-channel image, non-zero = dynamic) at ``size = (height, width)``, resized with
    nearest-neighbour sampling when the file has another size."""
    with Image.open(path) as image:
        mask = np.asarray(image)
    if mask.ndim != 2:
        raise ValueError(f"The dynamic mask {path} has shape {mask.shape}; expected a single-channel [H, W] image.")
    tensor = torch.from_numpy(mask > 0)
    if tuple(tensor.shape) != tuple(size):
        tensor = F.interpolate(tensor[None, None].float(), size=size, mode="nearest")[0, 0] > 0.5
    return tensor


def box_downscale(image: npt.NDArray, factor: int) -> npt.NDArray:
    """``[H, W, C]`` (or ``[H, W]``) integer image → ``[H // factor, W // factor, ...]``: the mean of each
    factor × factor block, rounded half up, same dtype; rows and columns beyond a whole block are dropped."""
    h, w = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[: h * factor, : w * factor].reshape(h, factor, w, factor, *image.shape[2:])
    area = factor * factor
    sums = blocks.sum(axis=(1, 3), dtype=np.int64)
    return ((sums + area // 2) // area).astype(image.dtype)


class DepthPriorDataset(InputDataset):
    """Images plus, when the dataparser lists depth files, a ``depth_image`` ``[H, W, 1]`` (0 = unknown), for
    driving logs with LiDAR a ``lidar_depth`` ``[H, W, 1]`` and ``metres_per_unit``, and with ``load_dynamic_masks``
    the ``dynamic_mask`` ``[H, W]`` when the dataparser lists them; images are box-downscaled when the dataparser
    asks for it (module docstring)."""

    def __init__(
        self, dataparser_outputs: DataparserOutputs, scale_factor: float = 1.0, load_dynamic_masks: bool = False
    ):
        super().__init__(dataparser_outputs, scale_factor)
        self.load_dynamic_masks = load_dynamic_masks
        factor = self.metadata.get("image_downscale_factor", 1)
        if int(factor) != factor or int(factor) < 1:
            raise ValueError(f"metadata['image_downscale_factor'] = {factor!r}; it must be a positive integer")
        self.image_downscale_factor = int(factor)
        self._driving: Optional[DrivingMetadata] = get_driving_metadata(self.metadata)
        if self.has_lidar_depth:
            self._sweep_index = np.asarray(self.metadata["lidar_sweep_index"]).astype(np.int64).reshape(-1)
            if self._sweep_index.shape[0] != len(self):
                raise ValueError(
                    f"metadata['lidar_sweep_index'] has {self._sweep_index.shape[0]} entries for {len(self)} images"
                )
        self._lidar_depths: Dict[int, Tensor] = {}
        self._lidar_lock = threading.Lock()

    @property
    def has_depth(self) -> bool:
        return "depth_filenames" in self.metadata

    @property
    def has_dynamic_masks(self) -> bool:
        """Whether batches carry ``dynamic_mask`` (an evaluation dataset whose dataparser lists the masks)."""
        return self.load_dynamic_masks and "dynamic_mask_filenames" in self.metadata

    @property
    def has_lidar_depth(self) -> bool:
        return self._driving is not None and self._driving.lidar is not None and "lidar_sweep_index" in self.metadata

    # ---------------------------------------------------------------- images at the cameras' resolution
    def _check_file_size(self, image_idx: int, path: Path, size: Tuple[int, int]) -> None:
        """Check that a ``(width, height)`` file reduces to its (dataparser) camera's size."""
        factor = self.image_downscale_factor
        camera = self._dataparser_outputs.cameras[image_idx]
        expected = (int(camera.width), int(camera.height))
        if (size[0] // factor, size[1] // factor) != expected:
            raise ValueError(
                f"{path} is {size[0]}x{size[1]} pixels; downscaled by image_downscale_factor={factor} that is "
                f"{size[0] // factor}x{size[1] // factor}, but its camera is {expected[0]}x{expected[1]}. "
                "The dataparser's cameras and image files disagree."
            )

    def get_numpy_image(self, image_idx: int) -> npt.NDArray[np.uint8]:
        if self.image_downscale_factor == 1:
            return super().get_numpy_image(image_idx)
        path = self._dataparser_outputs.image_filenames[image_idx]
        with Image.open(path) as pil_image:
            self._check_file_size(image_idx, path, pil_image.size)
            image = np.array(pil_image, dtype="uint8")
        if image.ndim == 2:
            image = image[:, :, None].repeat(3, axis=2)
        image = box_downscale(image, self.image_downscale_factor)
        if self.scale_factor != 1.0:  # InputDataset's own rescaling, applied after ours as it is to the cameras
            height, width = image.shape[:2]
            size = (int(width * self.scale_factor), int(height * self.scale_factor))
            image = np.array(Image.fromarray(image).resize(size, resample=Image.Resampling.BILINEAR), dtype="uint8")
        if image.shape[2] not in (3, 4):
            raise ValueError(f"{path} has {image.shape[2]} channels; expected 3 or 4")
        return image

    def get_mask(self, image_idx: int) -> Bool[Tensor, "H W 1"]:
        """The image's mask (True = use the pixel) at the cameras' resolution."""
        path = self._dataparser_outputs.mask_filenames[image_idx]
        if self.image_downscale_factor == 1:
            return get_image_mask_tensor_from_path(filepath=path, scale_factor=self.scale_factor)
        with Image.open(path) as pil_mask:
            self._check_file_size(image_idx, path, pil_mask.size)
            mask = np.array(pil_mask)
        if mask.ndim != 2:
            raise ValueError(f"The mask {path} should have 1 channel")
        factor = self.image_downscale_factor
        h, w = mask.shape[0] // factor, mask.shape[1] // factor
        # Conservative: a reduced pixel is used only if every full-resolution pixel it averages is.
        mask = (mask[: h * factor, : w * factor] > 0).reshape(h, factor, w, factor).all(axis=(1, 3))
        if self.scale_factor != 1.0:  # as InputDataset resizes masks: nearest neighbour
            size = (int(w * self.scale_factor), int(h * self.scale_factor))
            mask = np.array(Image.fromarray(mask).resize(size, resample=Image.Resampling.NEAREST))
        return torch.from_numpy(mask)[..., None]

    def get_data(self, image_idx: int, image_type: Literal["uint8", "float32"] = "float32") -> Dict:
        if self.image_downscale_factor == 1 or self._dataparser_outputs.mask_filenames is None:
            return super().get_data(image_idx, image_type)
        # InputDataset.get_data would read the masks at the file's resolution: same steps, our mask reader.
        if image_type == "float32":
            image = self.get_image_float32(image_idx)
        elif image_type == "uint8":
            image = self.get_image_uint8(image_idx)
        else:
            raise NotImplementedError(f"image_type (={image_type}) getter was not implemented, use uint8 or float32")
        data = {"image_idx": image_idx, "image": image, "mask": self.get_mask(image_idx)}
        if data["mask"].shape[:2] != image.shape[:2]:
            raise ValueError(f"Mask {tuple(data['mask'].shape[:2])} and image {tuple(image.shape[:2])} sizes differ")
        if self.mask_color:
            fill = torch.ones_like(image) * torch.tensor(self.mask_color)
            data["image"] = torch.where(data["mask"] == 1.0, image, fill)
        data.update(self.get_metadata(data))
        return data

    # ---------------------------------------------------------------- per-image extras
    def lidar_depth(self, image_idx: int) -> Float[Tensor, "H W 1"]:
        """The image's sweep projected into its camera (``self.cameras``, after ``scale_factor``), memoised."""
        with self._lidar_lock:
            depth = self._lidar_depths.get(image_idx)
        if depth is not None:
            return depth
        camera = self.cameras[image_idx]
        sweep = int(self._sweep_index[image_idx])
        if sweep < 0:
            depth = torch.zeros(int(camera.height), int(camera.width))
        else:
            lidar = self._driving.lidar
            points = torch.from_numpy(lidar.points[lidar.sweep_slice(sweep)])
            depth = lidar_depth_map_for_camera(points, camera)
        with self._lidar_lock:
            return self._lidar_depths.setdefault(image_idx, depth[..., None].float())

    def get_metadata(self, data: Dict) -> Dict:
        extras = {}
        index = data["image_idx"]
        if self.has_depth:
            path = self.metadata["depth_filenames"][index]
            unit_scale = float(self.metadata.get("depth_unit_scale_factor", 1.0))
            depth = torch.from_numpy(read_depth_file(path, unit_scale))
            depth = torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.zeros_like(depth))
            height, width = data["image"].shape[:2]
            if depth.shape != (height, width):
                depth = F.interpolate(depth[None, None], size=(height, width), mode="nearest")[0, 0]
            extras["depth_image"] = depth[..., None]
        if self.has_dynamic_masks:
            path = self.metadata["dynamic_mask_filenames"][index]
            extras["dynamic_mask"] = read_dynamic_mask(path, tuple(data["image"].shape[:2]))
        if self.has_lidar_depth:
            extras["lidar_depth"] = self.lidar_depth(index)
            extras["metres_per_unit"] = torch.tensor(float(self._driving.metres_per_unit), dtype=torch.float32)
        return extras
