"""LiDAR depth: projection of sweeps into cameras (against a sort-based reference, analytic cases and nerfstudio's
own rays), depth error metrics, the dataset's ``lidar_depth`` / box downscaling, and the model's LiDAR metrics and
loss."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.scene_box import SceneBox

from fourd_ns.datasets.depth_prior_dataset import DepthPriorDataset, box_downscale
from fourd_ns.geometry.camera_conventions import viewmat_from_nerfstudio_c2w
from fourd_ns.metrics.depth import depth_errors
from fourd_ns.sensors.driving_metadata import DrivingMetadata
from fourd_ns.sensors.lidar_projection import (
    downscale_sparse_depth,
    lidar_depth_map,
    lidar_depth_map_for_camera,
    lidar_depth_map_reference,
    points_to_camera,
)
from fourd_ns.sensors.lidar_sweeps import LidarSweeps

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_pose(generator: torch.Generator) -> torch.Tensor:
    """A random nerfstudio camera-to-world [3, 4] (proper rotation, centre within a few units of the origin)."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    centre = torch.randn(3, 1, generator=generator, dtype=torch.float64) * 3
    return torch.cat([q, centre], dim=1).float()


def world_from_opengl_camera(camera_to_world: torch.Tensor, camera_points: torch.Tensor) -> torch.Tensor:
    return camera_points @ camera_to_world[:, :3].T + camera_to_world[:, 3]


INTRINSICS = dict(fx=20.0, fy=22.0, cx=16.3, cy=11.8, width=32, height=24)


# ---------------------------------------------------------------------------------------------------- projection
def test_points_to_camera_matches_the_gsplat_view_matrix() -> None:
    generator = torch.Generator().manual_seed(0)
    pose = random_pose(generator)
    points = torch.randn(50, 3, generator=generator) * 5
    viewmat = viewmat_from_nerfstudio_c2w(pose[None])[0]
    expected = points @ viewmat[:3, :3].T + viewmat[:3, 3]
    assert torch.allclose(points_to_camera(points, pose), expected, atol=1e-5)


def test_depth_map_matches_the_reference_with_occlusions_and_culling() -> None:
    generator = torch.Generator().manual_seed(1)
    pose = random_pose(generator)
    # points in front of and behind the camera, many projecting outside the image
    camera_points = torch.randn(600, 3, generator=generator) * torch.tensor([4.0, 3.0, 6.0])
    points = world_from_opengl_camera(pose, camera_points)
    # occluded copies: the same rays from the camera centre, further away, plus exact duplicates
    centre = pose[:, 3]
    points = torch.cat([points, centre + (points[:200] - centre) * 1.7, points[:50]])
    fast = lidar_depth_map(points, pose, **INTRINSICS)
    reference = lidar_depth_map_reference(points, pose, **INTRINSICS)
    assert torch.equal(fast, reference)
    assert fast.shape == (24, 32)
    hits = int((fast > 0).sum())
    assert 30 < hits < 600  # some points landed, some were culled or hidden


def test_fronto_parallel_plane_gives_its_depth_everywhere() -> None:
    generator = torch.Generator().manual_seed(2)
    pose = random_pose(generator)
    d = 3.7
    xy = (torch.rand(2000, 2, generator=generator) - 0.5) * 2 * d
    camera_points = torch.cat([xy, torch.full((2000, 1), -d)], dim=1)  # OpenGL: the camera looks along -z
    depth = lidar_depth_map(world_from_opengl_camera(pose, camera_points), pose, **INTRINSICS)
    hits = depth > 0
    assert hits.float().mean() > 0.5
    assert torch.allclose(depth[hits], torch.full_like(depth[hits], d), rtol=1e-5)


@pytest.mark.parametrize("seed", [3, 4])
def test_point_on_the_optical_axis_lands_in_the_principal_point_pixel(seed: int) -> None:
    pose = random_pose(torch.Generator().manual_seed(seed))
    intrinsics = dict(INTRINSICS, cx=10.7, cy=7.6)  # floor and round disagree in both axes
    point = world_from_opengl_camera(pose, torch.tensor([[0.0, 0.0, -2.5]]))
    depth = lidar_depth_map(point, pose, **intrinsics)
    assert torch.nonzero(depth).tolist() == [[7, 10]]  # (row floor(cy), column floor(cx))
    assert math.isclose(float(depth[7, 10]), 2.5, rel_tol=1e-5)


def test_points_behind_near_or_outside_the_image_are_ignored() -> None:
    pose = torch.eye(4)[:3]
    fx, cx = INTRINSICS["fx"], INTRINSICS["cx"]
    x_last = (INTRINSICS["width"] - 1e-3 - cx) / fx  # u just below the width: last column
    x_out = (INTRINSICS["width"] + 1e-3 - cx) / fx  # u just beyond the width
    camera_points = torch.tensor(
        [
            [0.2, 0.1, 2.0],  # behind the camera (OpenGL z > 0) although x/z, y/z fall inside the image
            [0.0, 0.0, -5e-4],  # nearer than the near plane
            [x_out * 2.0, 0.0, -2.0],
            [-cx / fx * 2.0 - 1e-3, 0.0, -2.0],  # u just below 0
            [x_last * 2.0, 0.0, -2.0],
        ]
    )
    depth = lidar_depth_map(camera_points, pose, **INTRINSICS)
    assert torch.nonzero(depth).tolist() == [[11, 31]]


def test_nerfstudio_rays_through_pixel_centres_land_in_their_pixels() -> None:
    generator = torch.Generator().manual_seed(5)
    pose = random_pose(generator)
    camera = Cameras(camera_to_worlds=pose[None], **INTRINSICS)
    rays = camera.generate_rays(camera_indices=0)
    height, width = INTRINSICS["height"], INTRINSICS["width"]
    assert rays.origins.shape == (height, width, 3)
    distance = 1.0 + 5.0 * torch.rand(height, width, 1, generator=generator)
    points = rays.origins + distance * rays.directions
    depth = lidar_depth_map_for_camera(points.reshape(-1, 3), camera)
    forward = -pose[:, 2]
    expected = distance[..., 0] * (rays.directions @ forward)
    assert bool((depth > 0).all())
    assert torch.allclose(depth, expected, rtol=1e-5)
    # one camera of shape (1,) or () both work
    assert torch.equal(lidar_depth_map_for_camera(points.reshape(-1, 3), camera[0]), depth)


def test_camera_variant_rejects_distortion_and_batches() -> None:
    points = torch.zeros(1, 3)
    cameras = Cameras(camera_to_worlds=torch.eye(4)[None, :3].repeat(2, 1, 1), **INTRINSICS)
    with pytest.raises(ValueError, match="one camera"):
        lidar_depth_map_for_camera(points, cameras)
    distorted = Cameras(
        camera_to_worlds=torch.eye(4)[None, :3], distortion_params=torch.tensor([[0.1, 0, 0, 0, 0, 0]]), **INTRINSICS
    )
    with pytest.raises(ValueError, match="distortion"):
        lidar_depth_map_for_camera(points, distorted)


def test_downscaled_sparse_depth_equals_projecting_into_the_rescaled_camera() -> None:
    generator = torch.Generator().manual_seed(6)
    pose = random_pose(generator)
    intrinsics = dict(INTRINSICS, width=33, height=25)  # odd sizes: the partial last block is dropped
    camera = Cameras(camera_to_worlds=pose[None], **intrinsics)
    camera_points = torch.randn(3000, 3, generator=generator) * torch.tensor([3.0, 3.0, 1.0]) - torch.tensor([0, 0, 4])
    points = world_from_opengl_camera(pose, camera_points)
    full = lidar_depth_map_for_camera(points, camera)
    camera.rescale_output_resolution(0.5)
    half = lidar_depth_map_for_camera(points, camera)
    assert half.shape == (12, 16)
    assert torch.equal(downscale_sparse_depth(full, 2), half)
    assert downscale_sparse_depth(full, 1) is full


# ---------------------------------------------------------------------------------------------------- metrics
def test_depth_errors_by_hand() -> None:
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[1.0, 0.0], [2.0, 5.0]])  # (0, 1) has no reference
    errors = depth_errors(pred, target)
    assert int(errors["count"]) == 3
    assert math.isclose(float(errors["mae"]), 2.0 / 3.0, rel_tol=1e-6)
    assert math.isclose(float(errors["rmse"]), math.sqrt(2.0 / 3.0), rel_tol=1e-6)
    assert math.isclose(float(errors["absrel"]), (0.0 + 1.0 / 2.0 + 1.0 / 5.0) / 3.0, rel_tol=1e-6)

    valid = torch.tensor([[True, True], [True, False]])
    errors = depth_errors(pred[..., None], target[..., None], valid)  # [H, W, 1] works too
    assert int(errors["count"]) == 2
    assert math.isclose(float(errors["mae"]), 0.5, rel_tol=1e-6)
    assert math.isclose(float(errors["rmse"]), math.sqrt(0.5), rel_tol=1e-6)
    assert math.isclose(float(errors["absrel"]), 0.25, rel_tol=1e-6)

    empty = depth_errors(pred, torch.zeros_like(target))
    assert int(empty["count"]) == 0 and math.isnan(float(empty["rmse"]))
    with pytest.raises(ValueError, match="differ"):
        depth_errors(pred, target[:1])


# ---------------------------------------------------------------------------------------------------- dataset
FULL_W, FULL_H, FACTOR = 16, 12, 2
CAMERA = dict(fx=8.0, fy=8.0, cx=4.0, cy=3.0, width=FULL_W // FACTOR, height=FULL_H // FACTOR)


def pixel_point(column: int, row: int, z: float) -> list:
    """World point (identity camera) whose projection is the centre of pixel (column, row) of CAMERA, at depth z."""
    x = (column + 0.5 - CAMERA["cx"]) / CAMERA["fx"] * z
    y = (row + 0.5 - CAMERA["cy"]) / CAMERA["fy"] * z
    return [x, -y, -z]  # OpenCV camera axes → OpenGL (= world for the identity pose)


def make_sweeps(sweeps: list, metres_per_unit: float) -> LidarSweeps:
    points = np.asarray([p for sweep in sweeps for p in sweep], dtype=np.float32)
    m, s = points.shape[0], len(sweeps)
    return LidarSweeps(
        points=points,
        intensity=np.zeros(m, np.uint8),
        point_times=np.zeros(m, np.float32),
        point_seconds=np.zeros(m, np.float32),
        sensor=np.zeros(m, np.uint8),
        offsets=np.cumsum([0] + [len(sweep) for sweep in sweeps]).astype(np.int64),
        lidar_to_worlds=np.tile(np.eye(4, dtype=np.float32)[:3], (s, 1, 1)),
        sweep_times=np.linspace(0, 1, s).astype(np.float32),
        frame_indices=np.arange(s, dtype=np.int64),
        metres_per_unit=metres_per_unit,
    )


@pytest.fixture
def driving_outputs(tmp_path: Path) -> DataparserOutputs:
    rng = np.random.default_rng(0)
    paths = []
    for index, size in enumerate([(FULL_W, FULL_H), (FULL_W + 1, FULL_H + 1)]):  # the second has a partial block
        path = tmp_path / f"image_{index}.png"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    sweeps = make_sweeps(
        [
            [pixel_point(2, 1, 5.0), pixel_point(2, 1, 7.0), pixel_point(6, 4, 2.5), [0.0, 0.0, 3.0]],  # last: behind
            [pixel_point(0, 0, 1.0)],
        ],
        metres_per_unit=0.5,
    )
    driving = DrivingMetadata(camera_names=("front_camera",), lidar=sweeps, metres_per_unit=0.5)
    return DataparserOutputs(
        image_filenames=paths,
        cameras=Cameras(camera_to_worlds=torch.eye(4)[None, :3].repeat(2, 1, 1), **CAMERA),
        scene_box=SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]])),
        metadata={
            "driving": driving,
            "lidar_sweep_index": np.array([0, -1], dtype=np.int64),
            "image_downscale_factor": FACTOR,
        },
    )


def test_box_downscale_matches_a_loop() -> None:
    rng = np.random.default_rng(1)
    for factor in (2, 3):
        image = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
        reduced = box_downscale(image, factor)
        assert reduced.shape == (13 // factor, 17 // factor, 3) and reduced.dtype == np.uint8
        for i in range(reduced.shape[0]):
            for j in range(reduced.shape[1]):
                block = image[i * factor : (i + 1) * factor, j * factor : (j + 1) * factor].astype(np.float64)
                assert np.array_equal(reduced[i, j], np.floor(block.mean(axis=(0, 1)) + 0.5))


def test_dataset_box_downscales_images_to_the_cameras(driving_outputs: DataparserOutputs) -> None:
    dataset = DepthPriorDataset(driving_outputs)
    for index, path in enumerate(driving_outputs.image_filenames):
        data = dataset.get_data(index, image_type="uint8")
        assert data["image"].shape == (CAMERA["height"], CAMERA["width"], 3)
        full = np.array(Image.open(path))
        assert np.array_equal(data["image"].numpy(), box_downscale(full, FACTOR))
        assert torch.allclose(dataset[index]["image"], data["image"].float() / 255.0)


def test_dataset_names_the_file_whose_size_does_not_match(driving_outputs: DataparserOutputs) -> None:
    driving_outputs.cameras.width[1] = CAMERA["width"] - 1
    dataset = DepthPriorDataset(driving_outputs)
    with pytest.raises(ValueError, match="image_1.png"):
        dataset[1]
    with pytest.raises(ValueError, match="positive integer"):
        DepthPriorDataset(DataparserOutputs(**{**vars(driving_outputs), "metadata": {"image_downscale_factor": 1.5}}))


def test_dataset_downscales_masks_conservatively(driving_outputs: DataparserOutputs, tmp_path: Path) -> None:
    masks = []
    for index, path in enumerate(driving_outputs.image_filenames):
        width, height = Image.open(path).size
        mask = np.full((height, width), 255, dtype=np.uint8)
        mask[5, 3] = 0  # in the block of reduced pixel (row 2, column 1)
        masks.append(tmp_path / f"mask_{index}.png")
        Image.fromarray(mask).save(masks[-1])
    outputs = DataparserOutputs(**{**vars(driving_outputs), "mask_filenames": masks})
    data = DepthPriorDataset(outputs)[0]
    expected = torch.ones(CAMERA["height"], CAMERA["width"], 1, dtype=torch.bool)
    expected[2, 1] = False
    assert torch.equal(data["mask"], expected)


def test_dataset_projects_each_images_sweep(driving_outputs: DataparserOutputs) -> None:
    dataset = DepthPriorDataset(driving_outputs)
    first = dataset[0]
    depth = first["lidar_depth"]
    assert depth.shape == (CAMERA["height"], CAMERA["width"], 1) and depth.dtype == torch.float32
    expected = torch.zeros(CAMERA["height"], CAMERA["width"])
    expected[1, 2] = 5.0  # the return at 7.0 behind it is hidden
    expected[4, 6] = 2.5
    assert torch.allclose(depth[..., 0], expected, atol=1e-6)
    assert first["metres_per_unit"].shape == () and float(first["metres_per_unit"]) == 0.5
    assert dataset[0]["lidar_depth"] is depth  # memoised
    assert torch.equal(dataset[1]["lidar_depth"], torch.zeros(CAMERA["height"], CAMERA["width"], 1))  # no sweep


def test_dataset_lidar_depth_follows_the_scale_factor(driving_outputs: DataparserOutputs) -> None:
    dataset = DepthPriorDataset(driving_outputs, scale_factor=0.5)
    data = dataset[0]
    assert data["image"].shape == (3, 4, 3) and data["lidar_depth"].shape == (3, 4, 1)
    expected = torch.zeros(3, 4)
    expected[0, 1] = 5.0  # pixel (2, 1) at half resolution
    expected[2, 3] = 2.5
    assert torch.allclose(data["lidar_depth"][..., 0], expected, atol=1e-6)


def test_dataset_without_driving_lidar_returns_no_lidar_depth(driving_outputs: DataparserOutputs) -> None:
    metadata = {"image_downscale_factor": FACTOR}
    data = DepthPriorDataset(DataparserOutputs(**{**vars(driving_outputs), "metadata": metadata}))[0]
    assert "lidar_depth" not in data and "metres_per_unit" not in data
    metadata = {**driving_outputs.metadata, "driving": DrivingMetadata(camera_names=("front_camera",), lidar=None)}
    data = DepthPriorDataset(DataparserOutputs(**{**vars(driving_outputs), "metadata": metadata}))[0]
    assert "lidar_depth" not in data
    metadata = {**driving_outputs.metadata, "lidar_sweep_index": np.array([0])}
    with pytest.raises(ValueError, match="lidar_sweep_index"):
        DepthPriorDataset(DataparserOutputs(**{**vars(driving_outputs), "metadata": metadata}))


# ---------------------------------------------------------------------------------------------------- model
MODEL_CAMERA = dict(fx=20.0, fy=20.0, cx=12.0, cy=8.0, width=24, height=16)


def tiny_deform4d(**overrides):
    from fourd_ns.models.deform4d import Deform4DModelConfig

    generator = torch.Generator().manual_seed(7)
    means = (torch.rand(200, 3, generator=generator) - 0.5) * torch.tensor([2.0, 1.5, 1.0]) - torch.tensor([0, 0, 3])
    colors = torch.randint(0, 256, (200, 3), generator=generator, dtype=torch.uint8)
    config = Deform4DModelConfig(
        mlp_width=16, mlp_depth=2, mlp_skips=(), position_frequencies=2, time_frequencies=2, sh_degree=0, **overrides
    )
    scene_box = SceneBox(torch.tensor([[-2.0, -2, -5], [2, 2, 1]]))
    return config.setup(scene_box=scene_box, num_train_data=2, metadata={}, seed_points=(means, colors))


def model_camera() -> Cameras:
    return Cameras(camera_to_worlds=torch.eye(4)[None, :3], times=torch.tensor([[0.5]]), **MODEL_CAMERA)


def test_model_depth_is_camera_z_of_a_fronto_parallel_splat() -> None:
    """The rendered "depth" is z-depth: a wall of Gaussians at z = -3 renders 3 at every covered pixel, also off
    axis where the ray distance would be larger."""
    model = tiny_deform4d()
    columns, rows = torch.meshgrid(torch.linspace(-2.5, 2.5, 20), torch.linspace(-2.0, 2.0, 10), indexing="xy")
    with torch.no_grad():
        model.gauss_params["means"].copy_(torch.stack([columns, rows, torch.full_like(rows, -3.0)], -1).reshape(-1, 3))
        model.gauss_params["scales"].fill_(math.log(0.3))
        model.gauss_params["opacities"].fill_(5.0)
    model.eval()
    with torch.no_grad():
        outputs = model.get_outputs(model_camera())
    covered = outputs["accumulation"][..., 0] > 0.5
    assert covered[0, 0] and covered.float().mean() > 0.9
    assert torch.allclose(outputs["depth"][..., 0][covered], torch.tensor(3.0), atol=1e-4)


def test_model_reports_lidar_depth_errors_in_metres() -> None:
    model = tiny_deform4d()
    model.eval()
    with torch.no_grad():
        outputs = model.get_outputs(model_camera())
    rendered = outputs["depth"][..., 0]
    returns = torch.zeros_like(rendered, dtype=torch.bool)
    returns[::3, ::2] = True  # a sparse pattern of pixels with a return
    returns &= outputs["accumulation"][..., 0] > 0
    image = torch.zeros(MODEL_CAMERA["height"], MODEL_CAMERA["width"], 3, dtype=torch.uint8)
    batch = {
        "image": image,
        "lidar_depth": torch.where(returns, rendered, torch.zeros_like(rendered))[..., None],
        "metres_per_unit": torch.tensor(0.5),
    }
    metrics, images = model.get_image_metrics_and_images(outputs, batch)
    assert metrics["lidar_depth_rmse_m"] == 0.0 and metrics["lidar_depth_mae_m"] == 0.0
    assert metrics["lidar_depth_absrel"] == 0.0
    assert images["lidar_depth"].shape == (MODEL_CAMERA["height"], 2 * MODEL_CAMERA["width"], 3)

    batch["lidar_depth"] = torch.where(returns, rendered + 0.2, torch.zeros_like(rendered))[..., None]
    metrics, _ = model.get_image_metrics_and_images(outputs, batch)
    assert math.isclose(metrics["lidar_depth_rmse_m"], 0.1, rel_tol=1e-4)  # 0.2 units × 0.5 m per unit
    assert math.isclose(metrics["lidar_depth_mae_m"], 0.1, rel_tol=1e-4)
    expected_absrel = float((0.2 / (rendered[returns] + 0.2)).mean())
    assert math.isclose(metrics["lidar_depth_absrel"], expected_absrel, rel_tol=1e-4)


@pytest.mark.parametrize("num_downscales", [0, 1])
def test_lidar_depth_loss_has_gradient(num_downscales: int) -> None:
    model = tiny_deform4d(lidar_depth_loss_weight=0.5, num_downscales=num_downscales, resolution_schedule=1000)
    assert model.renders_depth_in_training()
    model.train()
    camera = model_camera()
    outputs = model.get_outputs(camera)
    scale = 2**num_downscales
    assert outputs["depth"].shape == (MODEL_CAMERA["height"] // scale, MODEL_CAMERA["width"] // scale, 1)
    # a full-resolution LiDAR map from points 0.3 units behind the Gaussians' centres
    means = model.gauss_params["means"].detach()
    lidar = lidar_depth_map_for_camera(means - torch.tensor([0.0, 0.0, 0.3]), camera)
    batch = {
        "image": torch.zeros(MODEL_CAMERA["height"], MODEL_CAMERA["width"], 3, dtype=torch.uint8),
        "lidar_depth": lidar[..., None],
    }
    losses = model.get_loss_dict(outputs, batch)
    assert losses["lidar_depth_loss"].item() > 0
    losses["lidar_depth_loss"].backward()
    assert model.gauss_params["means"].grad is not None
    assert float(model.gauss_params["means"].grad[:, 2].abs().sum()) > 0


def test_lidar_depth_loss_is_off_by_default() -> None:
    model = tiny_deform4d()
    assert not model.renders_depth_in_training()
    model.train()
    outputs = model.get_outputs(model_camera())
    assert outputs["depth"] is None
    batch = {
        "image": torch.zeros(MODEL_CAMERA["height"], MODEL_CAMERA["width"], 3, dtype=torch.uint8),
        "lidar_depth": torch.ones(MODEL_CAMERA["height"], MODEL_CAMERA["width"], 1),
    }
    assert "lidar_depth_loss" not in model.get_loss_dict(outputs, batch)
