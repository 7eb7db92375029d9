"""Tests of the nerfies-data dataparser on tiny captures written by ``tests/nerfies_fixture.py``."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fourd_ns.dataparsers.nerfies_dataparser import NerfiesDataError, NerfiesDataParserConfig
from fourd_ns.dataparsers.time_axis import TimeAxis, get_time_axis
from fourd_ns.geometry.camera_conventions import (
    c2w_opengl_to_nerfies,
    denormalise_points,
    nerfies_normalisation_transform,
    nerfies_to_c2w_opengl,
    normalise_points,
)
from nerfies_fixture import SCENE_CENTER, SCENE_SCALE, frame_ids, write_nerfies_scene

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """A complete capture shared by the read-only tests."""
    return write_nerfies_scene(
        tmp_path_factory.mktemp("nerfies") / "scene", with_depth=True, with_masks=True, with_flow=True
    )


def parse(root: Path, which: str = "train", **options):
    """DataparserOutputs of nerfstudio split ``which`` ('train', 'val' or 'test') with config ``options``."""
    return NerfiesDataParserConfig(data=root, **options).setup().get_dataparser_outputs(split=which)


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def project_json_camera(camera: dict, points: np.ndarray, downscale: int = 1) -> np.ndarray:
    """Pixels [N, 2] of world points through a camera JSON, OpenCV convention, written independently of
    the library (no distortion)."""
    orientation, position = np.array(camera["orientation"]), np.array(camera["position"])
    local = (points - position) @ orientation.T
    focal = np.array([1.0, camera["pixel_aspect_ratio"]]) * camera["focal_length"]
    return (local[:, :2] / local[:, 2:] * focal + np.array(camera["principal_point"])) / downscale


# ---- splits and times ---------------------------------------------------------------------------------------


def test_dataset_split_trains_on_left_and_tests_on_right(scene):
    left, right = frame_ids(6)
    train, test = parse(scene, "train"), parse(scene, "test")
    assert train.metadata["frame_ids"] == left
    assert test.metadata["frame_ids"] == right
    assert [p.name for p in train.image_filenames] == [f"{i}.png" for i in left]
    assert all(p.parent == scene / "rgb" / "1x" for p in test.image_filenames)
    assert train.metadata["camera_ids"].tolist() == [0] * 6
    assert test.metadata["camera_ids"].tolist() == [1] * 6
    assert len(train.cameras) == 6


def test_interp_and_explicit_splits(scene):
    ids = json.loads((scene / "dataset.json").read_text())["ids"]
    assert parse(scene, "train", split="interp").metadata["frame_ids"] == ids[::4]
    assert parse(scene, "val", split="interp").metadata["frame_ids"] == ids[2::4]
    explicit = {"split": "explicit", "train_ids": ("right_00001", "left_00003"), "test_ids": ("left_00000",)}
    assert parse(scene, "train", **explicit).metadata["frame_ids"] == ["right_00001", "left_00003"]
    assert parse(scene, "test", **explicit).metadata["frame_ids"] == ["left_00000"]


def test_times_are_normalised_over_all_ids(scene):
    train, test = parse(scene, "train"), parse(scene, "test")
    expected = torch.arange(6, dtype=torch.float32)[:, None] / 5
    assert torch.allclose(train.cameras.times, expected)
    assert torch.equal(train.cameras.times, test.cameras.times)  # left and right of one time id agree
    assert train.metadata["time_ids"].tolist() == list(range(6))
    assert get_time_axis(train.metadata) == TimeAxis(num_frames=6, frame_step=1 / 5)
    assert train.metadata["time_offset"] == 0.0
    assert "time_span" not in train.metadata  # replaced by the typed time axis
    # Normalisation is over every id, not the split: the interp test split never contains time 0 or 5.
    interp_test = parse(scene, "test", split="interp")
    assert torch.allclose(interp_test.cameras.times[:, 0], interp_test.metadata["time_ids"].float() / 5)


def test_single_frame_time_is_zero(tmp_path):
    root = write_nerfies_scene(tmp_path / "scene", num_frames=1)
    assert parse(root).cameras.times.tolist() == [[0.0]]


def test_warp_id_fallback(tmp_path):
    root = write_nerfies_scene(tmp_path / "scene", include_time_id=False)
    outputs = parse(root)
    assert outputs.metadata["time_key"] == "warp_id"
    assert torch.allclose(outputs.cameras.times[:, 0], torch.arange(6) / 5)


# ---- cameras ------------------------------------------------------------------------------------------------


def test_intrinsics_at_2x_are_half_of_1x(scene):
    full, half = parse(scene), parse(scene, downscale_factor=2)
    for name in ("fx", "fy", "cx", "cy"):
        assert torch.allclose(getattr(half.cameras, name), getattr(full.cameras, name) / 2)
    assert half.cameras.width.flatten().tolist() == [16] * 6
    assert half.cameras.height.flatten().tolist() == [12] * 6
    assert all(p.parent.name == "2x" for p in half.image_filenames)
    assert torch.allclose(full.cameras.fy, full.cameras.fx * 1.05)  # pixel_aspect_ratio


def test_nerfstudio_camera_projects_like_the_json_camera(scene):
    """The same world point lands on the same pixel through the JSON camera (OpenCV) and the nerfstudio
    camera (OpenGL c2w in normalised coordinates), and nerfstudio's ray through that pixel hits the point."""
    outputs = parse(scene, "test", downscale_factor=2)
    points = np.load(scene / "points.npy")[:5]
    normalised = normalise_points(torch.from_numpy(points), torch.from_numpy(SCENE_CENTER), SCENE_SCALE).float()
    for index, frame_id in enumerate(outputs.metadata["frame_ids"]):
        expected = project_json_camera(json.loads((scene / "camera" / f"{frame_id}.json").read_text()), points, 2)
        camera = outputs.cameras[index]
        c2w = camera.camera_to_worlds
        local = (normalised - c2w[:, 3]) @ c2w[:, :3]  # OpenGL camera axes: looks along -z, y up
        depth = -local[:, 2]
        pixels = torch.stack(
            [camera.fx * local[:, 0] / depth + camera.cx, -camera.fy * local[:, 1] / depth + camera.cy], -1
        )
        assert np.allclose(pixels.numpy(), expected, atol=1e-3)

        coords = torch.from_numpy(expected[:, ::-1].copy()).float()  # nerfstudio coords are (y, x)
        rays = outputs.cameras.generate_rays(camera_indices=index, coords=coords)
        to_point = normalised - rays.origins
        cosine = torch.nn.functional.cosine_similarity(to_point, rays.directions, dim=-1)
        assert torch.allclose(cosine, torch.ones_like(cosine), atol=1e-5)


def test_pose_convention_round_trip():
    generator = torch.Generator().manual_seed(0)
    rotation, _ = torch.linalg.qr(torch.randn(4, 3, 3, generator=generator, dtype=torch.float64))
    rotation = rotation * torch.linalg.det(rotation)[:, None, None]  # proper rotations
    position = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    c2w = nerfies_to_c2w_opengl(rotation, position)
    orientation_back, position_back = c2w_opengl_to_nerfies(c2w)
    assert torch.allclose(orientation_back, rotation) and torch.allclose(position_back, position)
    # OpenGL camera looks along -z: the c2w -z column is the OpenCV forward axis (3rd row of orientation).
    assert torch.allclose(-c2w[:, :, 2], rotation[:, 2, :])
    center = torch.tensor([0.1, -2.0, 3.0], dtype=torch.float64)
    assert torch.allclose(denormalise_points(normalise_points(position, center, 0.3), center, 0.3), position)
    transform = nerfies_normalisation_transform(center)
    assert torch.allclose(
        0.3 * (position @ transform[:, :3].T + transform[:, 3]), normalise_points(position, center, 0.3)
    )


def test_dataparser_transform_maps_json_positions_to_camera_centres(scene):
    outputs = parse(scene)
    for index, frame_id in enumerate(outputs.metadata["frame_ids"]):
        position = torch.tensor(json.loads((scene / "camera" / f"{frame_id}.json").read_text())["position"])
        transform = outputs.dataparser_transform
        mapped = outputs.dataparser_scale * (transform[:, :3] @ position.float() + transform[:, 3])
        assert torch.allclose(mapped, outputs.cameras.camera_to_worlds[index, :, 3], atol=1e-5)
    assert outputs.scene_box.aabb[1].min() >= outputs.cameras.camera_to_worlds[:, :, 3].abs().max()


@pytest.mark.parametrize("key", ["tangential_distortion", "tangential"])
def test_distortion_keys_reach_nerfstudio_cameras(tmp_path, key):
    root = write_nerfies_scene(
        tmp_path / "scene",
        tangential_key=key,
        radial_distortion=(0.05, -0.01, 0.002),
        tangential_distortion=(0.003, -0.002),
    )
    params = parse(root).cameras.distortion_params
    # nerfstudio order: k1, k2, k3, k4, p1, p2
    expected = torch.tensor([0.05, -0.01, 0.002, 0.0, 0.003, -0.002])
    assert torch.allclose(params, expected.expand(6, 6))


def test_full_image_datamanager_undistorts_our_cameras(tmp_path):
    """nerfstudio 1.1.5's FullImageDatamanager undistorts PERSPECTIVE images that carry distortion_params
    (cv2.undistort + crop) and rewrites the camera intrinsics; times survive."""
    from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig

    root = write_nerfies_scene(tmp_path / "scene", num_frames=3, radial_distortion=(0.2, 0.05, 0.0))
    parsed = parse(root)
    manager = FullImageDatamanagerConfig(dataparser=NerfiesDataParserConfig(data=root), cache_images="gpu").setup(
        device="cpu"
    )
    camera, data = manager.next_train(0)
    index = camera.metadata["cam_idx"]
    assert data["image"].shape[:2] == (camera.height.item(), camera.width.item())
    assert data["image"].shape[:2] != (24, 32)  # cropped to the valid undistorted region
    assert not torch.allclose(camera.fx, parsed.cameras.fx[index])
    assert torch.allclose(camera.times, parsed.cameras.times[index : index + 1])


def test_distorted_points_are_coloured_where_the_distorted_image_shows_them(tmp_path):
    root = write_nerfies_scene(
        tmp_path / "scene", radial_distortion=(0.2, 0.05, 0.0), tangential_distortion=(0.01, 0.0)
    )
    check_seed_colours(root)


# ---- seed points and extras ---------------------------------------------------------------------------------


def check_seed_colours(root: Path) -> None:
    """Points that win the z-buffer in the first training image carry that pixel's colour."""
    outputs = parse(root, seed_color_views=1)
    rgb = outputs.metadata["points3D_rgb"]
    image = np.asarray(Image.open(outputs.image_filenames[0]).convert("RGB"))
    colours_in_image = {tuple(c) for c in image.reshape(-1, 3)}
    assert rgb.dtype == torch.uint8 and rgb.shape == (40, 3)
    seen = [tuple(c) for c in rgb.tolist() if tuple(c) != (128, 128, 128)]
    assert len(seen) > 20 and all(c in colours_in_image for c in seen)


def test_seed_points_are_normalised_and_coloured(scene):
    outputs = parse(scene)
    xyz = outputs.metadata["points3D_xyz"]
    expected = (np.load(scene / "points.npy") - SCENE_CENTER) * SCENE_SCALE
    assert xyz.dtype == torch.float32 and torch.allclose(xyz, torch.from_numpy(expected).float())
    check_seed_colours(scene)
    assert "points3D_xyz" not in parse(scene, load_points=False).metadata


def test_extras_are_aligned_with_the_split(scene):
    train, test = parse(scene, "train"), parse(scene, "test")
    for outputs in (train, test):
        names = outputs.metadata["frame_ids"]
        for key, folder in [
            ("depth_filenames", "depth"),
            ("dynamic_mask_filenames", "dynamic_mask"),
            ("flow_filenames", "flow"),
            ("scene_flow_filenames", "scene_flow"),
        ]:
            assert [p.parent for p in outputs.metadata[key]] == [scene / folder / "1x"] * 6
            assert [p.name.split(".")[0] for p in outputs.metadata[key]] == names
        assert outputs.mask_filenames is None
        # Depth is in world units; nerfstudio's DepthDataset multiplies by this factor times dataparser_scale.
        assert outputs.metadata["depth_unit_scale_factor"] * outputs.dataparser_scale == SCENE_SCALE
    # NeRF-DS masks exist for training views only.
    assert [p.name for p in train.metadata["nerfds_mask_filenames"]] == [f"{i}.png.png" for i in frame_ids(6)[0]]
    assert "nerfds_mask_filenames" not in test.metadata
    mixed = parse(scene, split="explicit", train_ids=("right_00001", "left_00003")).metadata["nerfds_mask_filenames"]
    assert mixed == [None, scene / "resized_mask" / "1x" / "left_00003.png.png"]
    off = parse(scene, load_depth=False, load_masks=False, load_flow=False).metadata
    assert not {"depth_filenames", "dynamic_mask_filenames", "nerfds_mask_filenames", "flow_filenames"} & set(off)


def test_partial_extras_are_an_error(tmp_path):
    root = write_nerfies_scene(tmp_path / "scene", with_depth=True)
    (root / "depth" / "1x" / "left_00002.npy").unlink()
    with pytest.raises(NerfiesDataError, match="left_00002.npy"):
        parse(root)


def test_parsing_never_writes_into_the_dataset(scene):
    before = tree_hash(scene)
    for which in ("train", "test"):
        parse(scene, which)
        parse(scene, which, downscale_factor=2, split="interp")
    assert tree_hash(scene) == before


# ---- errors -------------------------------------------------------------------------------------------------


@pytest.fixture
def fresh(tmp_path) -> Path:
    """A capture each error test may damage."""
    return write_nerfies_scene(tmp_path / "scene", num_frames=4, width=16, height=12, num_points=8)


def test_missing_camera_files_are_all_listed(fresh):
    (fresh / "camera" / "left_00001.json").unlink()
    (fresh / "camera" / "left_00003.json").unlink()
    with pytest.raises(NerfiesDataError, match="left_00001.json") as error:
        parse(fresh)
    assert "left_00003.json" in str(error.value)


def test_missing_image(fresh):
    (fresh / "rgb" / "1x" / "right_00002.png").unlink()
    parse(fresh, "train")
    with pytest.raises(NerfiesDataError, match="right_00002.png"):
        parse(fresh, "test")


def test_missing_downscale_folder_lists_available_ones(fresh):
    with pytest.raises(NerfiesDataError, match=r"rgb/4x.*available: 1x, 2x"):
        parse(fresh, downscale_factor=4)


def test_corrupt_png(fresh):
    (fresh / "rgb" / "1x" / "left_00002.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(NerfiesDataError, match=r"left_00002.png: unreadable or corrupt"):
        parse(fresh)


def test_truncated_png(fresh):
    path = fresh / "rgb" / "1x" / "left_00001.png"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(NerfiesDataError, match="left_00001.png"):
        parse(fresh)


def test_wrong_image_size(fresh):
    edit_json(fresh / "camera" / "left_00002.json", image_size=[20, 12])
    with pytest.raises(NerfiesDataError, match=r"left_00002.png: image is 16x12 .* implies 20x12"):
        parse(fresh)


def test_one_pixel_rounding_is_accepted(tmp_path):
    root = write_nerfies_scene(tmp_path / "scene", num_frames=2, width=33, height=25, num_points=8)
    for frame_id in frame_ids(2)[0]:
        edit_json(root / "camera" / f"{frame_id}.json", image_size=[34, 26])  # 2x images are 16x12 or 17x13
    assert parse(root, downscale_factor=2).cameras.width.flatten().tolist() == [16, 16]


def test_empty_train_ids(fresh):
    edit_json(fresh / "dataset.json", train_ids=[])
    with pytest.raises(NerfiesDataError, match=r"'train' split is empty.*train_ids"):
        parse(fresh)
    with pytest.raises(NerfiesDataError, match=r"'train' split is empty.*explicit split option 'train_ids'"):
        parse(fresh, split="explicit", test_ids=("left_00000",))


def test_split_ids_not_in_dataset_ids(fresh):
    edit_json(fresh / "dataset.json", val_ids=["right_00000", "ghost_007"])
    with pytest.raises(NerfiesDataError, match="ghost_007"):
        parse(fresh, "val")


def test_refused_distortion_names_camera_and_coefficients(tmp_path):
    root = write_nerfies_scene(tmp_path / "scene", num_frames=2, num_points=8, radial_distortion=(0.1, 0.0, 0.0))
    with pytest.raises(NerfiesDataError, match=r"left_00000.json: radial_distortion=\[0.1, 0.0, 0.0\]"):
        parse(root, distortion="refuse")


def test_skew_is_refused(fresh):
    edit_json(fresh / "camera" / "left_00001.json", skew=0.5)
    with pytest.raises(NerfiesDataError, match=r"left_00001.json: skew=0.5"):
        parse(fresh)


@pytest.mark.parametrize("name", ["metadata.json", "camera/left_00000.json", "scene.json"])
def test_malformed_json(fresh, name):
    (fresh / name).write_text("{not json")
    with pytest.raises(NerfiesDataError, match=f"Malformed JSON in .*{name}"):
        parse(fresh)


def test_missing_top_level_files_are_all_listed(fresh):
    (fresh / "scene.json").unlink()
    (fresh / "metadata.json").unlink()
    with pytest.raises(NerfiesDataError, match=r"metadata.json[\s\S]*scene.json"):
        parse(fresh)


# ---- registration -------------------------------------------------------------------------------------------


def test_spec_module_does_not_import_datamanagers():
    code = (
        "import sys; from fourd_ns.dataparsers.specs import nerfies_data; "
        "bad = [m for m in sys.modules if m.startswith(('nerfstudio.data.datamanagers', 'nerfstudio.pipelines', "
        "'nerfstudio.models', 'nerfstudio.configs.method_configs'))]; "
        "assert not bad, bad; assert nerfies_data.config.__class__.__name__ == 'NerfiesDataParserConfig'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, capture_output=True, timeout=120)


def test_dataparser_is_discovered_when_installed():
    names = {ep.name for ep in importlib.metadata.entry_points(group="nerfstudio.dataparser_configs")}
    if "nerfies-data" not in names:
        pytest.skip("fourd_ns is not installed (pip install -e .): no 'nerfies-data' entry point to discover")
    from nerfstudio.plugins.registry_dataparser import discover_dataparsers

    dataparsers, descriptions = discover_dataparsers()
    assert isinstance(dataparsers["nerfies-data"], NerfiesDataParserConfig)
    assert "Nerfies" in descriptions["nerfies-data"]
