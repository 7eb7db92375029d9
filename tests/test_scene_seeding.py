"""Tests of LiDAR seeding: points inside annotated boxes go to their actor in box coordinates, budgets and voxel
thinning, sparse actors (filled or skipped), stationary actors, colours from the source images, neighbour scales
against a brute-force computation, and an end-to-end run on a tiny PandaSet-layout log through `pandaset-data`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fourd_ns.dataparsers.pandaset_dataparser import PandaSetDataParserConfig
from fourd_ns.scene.driving_scene import DrivingScene
from fourd_ns.scene.far_field import FarFieldConfig, far_field_gaussians
from fourd_ns.scene.lidar_seeding import LidarSeedingConfig, neighbour_scales, seed_from_lidar
from fourd_ns.scene.neural_gaussians import NeuralGaussianDecoder
from fourd_ns.scene.neural_scene import neural_driving_scene
from fourd_ns.scene.rigid_actors import frame_hold_time
from fourd_ns.sensors.actor_tracks import ActorTrack
from fourd_ns.sensors.driving_metadata import DrivingMetadata, get_driving_metadata
from fourd_ns.sensors.lidar_sweeps import LidarSweeps
from nerfstudio.cameras.cameras import Cameras, CameraType
from pandaset_fixture import write_pandaset_log

pytestmark = pytest.mark.usefixtures("one_torch_thread")

METRES_PER_UNIT = 2.0
CAR_SIZE_WLH = np.array([2.0, 4.0, 1.5]) / METRES_PER_UNIT
"""Box of the moving car in output units (width along box y, length along box x, height along z)."""


def _pose(yaw: float, translation) -> np.ndarray:
    pose = np.eye(4)
    c, s = math.cos(yaw), math.sin(yaw)
    pose[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    pose[:3, 3] = translation
    return pose


def _track(track_id: str, frames, poses, size_wlh, stationary: bool = False) -> ActorTrack:
    frames = np.asarray(frames, dtype=np.int64)
    return ActorTrack(
        track_id=track_id, label="Car", frame_indices=frames, times=(frames / 4.0).astype(np.float32),
        poses=np.asarray(poses, dtype=np.float32), size_wlh=np.asarray(size_wlh, dtype=np.float32),
        stationary=stationary, deformable=False,
    )  # fmt: skip


def _box_grid(size_wlh: np.ndarray, offset: float, count: int = 3) -> np.ndarray:
    """count³ box-frame points strictly inside a box, shifted by ``offset`` of a cell (distinct per frame)."""
    length, width, height = size_wlh[1], size_wlh[0], size_wlh[2]
    axes = [(np.arange(count) + 0.25 + 0.5 * offset) / count - 0.5 for _ in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return grid * [length, width, height]


def _apply(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ pose[:3, :3].T + pose[:3, 3]


class _Log:
    """Three sweeps (frames 0, 1, 2) of a moving car, a parked car, a sparse car, an actor annotated only in frame
    3, and ground points; sweeps 0 and 1 are the source frames."""

    def __init__(self) -> None:
        self.car_poses = [_pose(0.0, [5.0, 0.0, 0.0]), _pose(math.pi / 2, [6.0, 0.5, 0.0]), _pose(0.3, [7.0, 1.0, 0.0])]
        self.car_local = [_box_grid(CAR_SIZE_WLH, offset) for offset in (0.0, 0.5, 0.25)]
        self.parked_pose = _pose(0.4, [0.0, 6.0, 0.0])
        self.parked_local = _box_grid(CAR_SIZE_WLH, 0.0, count=2)
        self.sparse_pose = _pose(0.0, [-6.0, -6.0, 0.0])
        self.sparse_local = np.array([[0.1, 0.0, 0.0], [-0.1, 0.1, 0.0]])
        rows, columns = np.mgrid[0:10, 0:12]
        self.ground = np.stack([columns * 0.7 - 4.0, rows * 0.7 + 9.0, np.full(rows.shape, -1.0)], -1).reshape(-1, 3)
        sweeps, times = [], []
        for frame in range(3):
            groups = [_apply(self.car_poses[frame], self.car_local[frame]), self.ground + [0.0, 0.0, 0.01 * frame]]
            if frame == 0:
                groups += [_apply(self.parked_pose, self.parked_local), _apply(self.sparse_pose, self.sparse_local)]
            points = np.concatenate(groups)
            sweeps.append(points)
            times.append(frame / 4.0 + np.linspace(0.0, 0.02, len(points)))
        self.sweeps = sweeps
        lidar_to_worlds = np.tile(np.eye(4)[:3], (3, 1, 1))
        lidar_to_worlds[:, 0, 3] = [0.0, 1.0, 2.0]
        self.lidar = LidarSweeps(
            points=np.concatenate(sweeps).astype(np.float32),
            intensity=np.zeros(sum(map(len, sweeps)), dtype=np.uint8),
            point_times=np.concatenate(times).astype(np.float32),
            point_seconds=np.concatenate(times).astype(np.float32),
            sensor=np.zeros(sum(map(len, sweeps)), dtype=np.uint8),
            offsets=np.concatenate([[0], np.cumsum([len(s) for s in sweeps])]).astype(np.int64),
            lidar_to_worlds=lidar_to_worlds.astype(np.float32),
            sweep_times=np.array([0.0, 0.25, 0.5], dtype=np.float32),
            frame_indices=np.array([0, 1, 2], dtype=np.int64),
            metres_per_unit=METRES_PER_UNIT,
        )
        self.tracks = [
            _track("car", [0, 1, 2], self.car_poses, CAR_SIZE_WLH),
            _track("parked", [0, 1], [self.parked_pose] * 2, CAR_SIZE_WLH, stationary=True),
            _track("sparse", [0], [self.sparse_pose], CAR_SIZE_WLH),
            _track("later", [3], [_pose(0.0, [0.0, 0.0, 0.0])], CAR_SIZE_WLH),
        ]
        self.driving = DrivingMetadata(
            camera_names=("front_camera",), lidar=self.lidar, actors=self.tracks, metres_per_unit=METRES_PER_UNIT
        )


def _sorted_rows(points) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64).round(4)
    return points[np.lexsort(points.T[::-1])]


def _config(**overrides) -> LidarSeedingConfig:
    settings = dict(voxel_size=0.0, min_points_per_actor=0)
    settings.update(overrides)
    return LidarSeedingConfig(**settings)


def test_points_inside_boxes_go_to_their_actor_in_box_coordinates():
    log = _Log()
    seeds = seed_from_lidar(log.driving, [0, 1], config=_config())
    assert list(seeds.actors) == ["car", "parked", "sparse"]  # 'later' is annotated in no source frame
    np.testing.assert_allclose(
        _sorted_rows(seeds.actors["car"].positions), _sorted_rows(np.concatenate(log.car_local[:2])), atol=1e-4
    )
    np.testing.assert_allclose(_sorted_rows(seeds.actors["parked"].positions), _sorted_rows(log.parked_local),
                               atol=1e-4)  # fmt: skip
    np.testing.assert_allclose(_sorted_rows(seeds.actors["sparse"].positions), _sorted_rows(log.sparse_local),
                               atol=1e-4)  # fmt: skip
    expected_background = np.concatenate([log.ground, log.ground + [0.0, 0.0, 0.01]])
    np.testing.assert_allclose(_sorted_rows(seeds.background.positions), _sorted_rows(expected_background), atol=1e-4)
    assert seeds.tracks["car"] is log.tracks[0]
    # Capture times come from LidarSweeps.point_times: the car's points are from sweeps 0 (t < 0.25) and 1.
    car_times = seeds.actors["car"].times
    assert int((car_times < 0.1).sum()) == 27 and int((car_times >= 0.25).sum()) == 27
    torch.testing.assert_close(seeds.sensor_positions, torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    assert not bool(seeds.background.seen.any())  # no images: grey and unseen
    torch.testing.assert_close(seeds.background.colors, torch.full_like(seeds.background.colors, 0.5))


def test_stationary_actors_to_background_and_no_split():
    log = _Log()
    seeds = seed_from_lidar(log.driving, [0, 1], config=_config(stationary_actors_to_background=True))
    assert list(seeds.actors) == ["car", "sparse"]
    assert seeds.background.num == 2 * len(log.ground) + len(log.parked_local)
    flat = seed_from_lidar(log.driving, [0, 1], config=_config(split_actors=False))
    assert flat.actors == {} and flat.background.num == len(log.sweeps[0]) + len(log.sweeps[1])


def test_budgets_voxels_and_sparse_actors():
    log = _Log()
    seeds = seed_from_lidar(log.driving, [0, 1], config=_config(max_background_points=50, max_points_per_actor=10))
    assert seeds.background.num == 50 and seeds.actors["car"].num == 10
    again = seed_from_lidar(log.driving, [0, 1], config=_config(max_background_points=50, max_points_per_actor=10))
    torch.testing.assert_close(again.background.positions, seeds.background.positions)  # deterministic
    # 2 m voxels (1 unit) merge the two sweeps' ground grids (0.01 units apart in z) and thin the 0.7-unit grid.
    voxels = seed_from_lidar(log.driving, [0, 1], config=_config(voxel_size=2.0))
    keys = np.floor(voxels.background.positions.numpy() / 1.0)
    assert len(np.unique(keys, axis=0)) == voxels.background.num < len(log.ground)
    # The sparse actor (2 points) is filled up inside its box, or skipped.
    filled = seed_from_lidar(log.driving, [0, 1], config=_config(min_points_per_actor=20))
    sparse = filled.actors["sparse"]
    assert sparse.num == 20 and int(sparse.seen.sum()) == 0
    half = torch.tensor([CAR_SIZE_WLH[1], CAR_SIZE_WLH[0], CAR_SIZE_WLH[2]]) / 2
    assert bool(torch.all(sparse.positions.abs() <= half))
    torch.testing.assert_close(sparse.times[2:], torch.zeros(18))  # its only source annotation is at time 0
    skipped = seed_from_lidar(log.driving, [0, 1], config=_config(min_points_per_actor=20, few_points="skip"))
    assert "sparse" not in skipped.actors and "parked" not in skipped.actors and "car" in skipped.actors
    assert skipped.background.num == filled.background.num  # a skipped actor's points are dropped


def test_colours_come_from_the_image_of_the_same_frame():
    log = _Log()
    # A camera at (0, 0, 0.5) looking along +x (OpenGL axes: x_cam = -y, y_cam = +z, z_cam = -x).
    camera = Cameras(
        camera_to_worlds=torch.tensor([[[0.0, 0.0, -1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.5]]]),
        fx=20.0, fy=20.0, cx=16.0, cy=12.0, width=32, height=24, camera_type=CameraType.PERSPECTIVE,
    )  # fmt: skip
    rows, columns = torch.meshgrid(torch.arange(24.0), torch.arange(32.0), indexing="ij")
    image = torch.stack([columns / 32, rows / 24, torch.full_like(rows, 0.25)], dim=-1)
    seeds = seed_from_lidar(log.driving, [0, 1], camera, [image], image_sweeps=[0], config=_config())
    car = seeds.actors["car"]
    from_sweep_0 = car.times < 0.1
    assert bool(car.seen[from_sweep_0].all()) and not bool(car.seen[~from_sweep_0].any())
    local = car.positions[from_sweep_0]
    world = local + torch.tensor([5.0, 0.0, 0.0])  # frame 0's box has no rotation
    u = 20.0 * (-world[:, 1]) / world[:, 0] + 16.0
    v = 20.0 * (-(world[:, 2] - 0.5)) / world[:, 0] + 12.0
    expected = torch.stack([torch.floor(u) / 32, torch.floor(v) / 24, torch.full_like(u, 0.25)], dim=-1)
    torch.testing.assert_close(car.colors[from_sweep_0], expected)
    torch.testing.assert_close(car.colors[~from_sweep_0], torch.full((27, 3), 0.5))
    dropped = seed_from_lidar(log.driving, [0, 1], camera, [image], image_sweeps=[0],
                              config=_config(drop_unseen=True))  # fmt: skip
    assert dropped.actors["car"].num == 27 and bool(dropped.background.seen.all())


def test_neighbour_scales_match_brute_force():
    points = np.random.default_rng(0).normal(size=(60, 3))
    distances = torch.cdist(torch.from_numpy(points), torch.from_numpy(points))
    nearest = distances.sort(dim=1).values[:, 1:4].numpy()  # column 0 is the point itself
    np.testing.assert_allclose(neighbour_scales(points, 3), nearest[:, 2], rtol=1e-10)
    np.testing.assert_allclose(neighbour_scales(points, 3, "mean-nearest"), nearest.mean(axis=1), rtol=1e-10)
    np.testing.assert_allclose(neighbour_scales(points[:3], 3), np.sort(distances[:3, :3].numpy(), 1)[:, 2])
    assert np.isnan(neighbour_scales(points[:1], 3)).all() and neighbour_scales(points[:0], 3).shape == (0,)


def test_seed_scales_are_clamped_in_metres():
    log = _Log()
    seeds = seed_from_lidar(log.driving, [0], config=_config(min_scale=0.5, max_scale=1.2))
    ground = seeds.background.positions.numpy()
    expected = np.clip(neighbour_scales(ground, 3), 0.5 / METRES_PER_UNIT, 1.2 / METRES_PER_UNIT)
    np.testing.assert_allclose(seeds.background.scales.numpy(), np.repeat(expected[:, None], 3, 1), rtol=1e-6)


def test_bad_inputs_are_reported():
    log = _Log()
    with pytest.raises(ValueError, match="distinct sweeps"):
        seed_from_lidar(log.driving, [0, 0])
    with pytest.raises(ValueError, match="distinct sweeps"):
        seed_from_lidar(log.driving, [5])
    with pytest.raises(ValueError, match="min_points_per_actor"):
        LidarSeedingConfig(min_points_per_actor=10, max_points_per_actor=5)
    with pytest.raises(ValueError, match="no LiDAR|none loaded"):
        seed_from_lidar(DrivingMetadata(camera_names=(), lidar=None), [0])


@pytest.fixture(scope="module")
def parsed_log(tmp_path_factory):
    root = write_pandaset_log(tmp_path_factory.mktemp("pandaset") / "001", num_frames=4).root
    parser = PandaSetDataParserConfig(data=root, cameras=("front", "front_left"), downscale_factor=2).setup()
    return parser.get_dataparser_outputs("train")


def _load(path: Path, factor: int) -> torch.Tensor:
    image = Image.open(path)
    image = image.resize((image.width // factor, image.height // factor), Image.Resampling.BOX)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)


def test_end_to_end_on_a_tiny_pandaset_log(parsed_log):
    outputs = parsed_log
    driving = get_driving_metadata(outputs.metadata)
    images = [_load(path, 2) for path in outputs.image_filenames]
    image_sweeps = outputs.metadata["lidar_sweep_index"].tolist()
    sources = sorted(set(image_sweeps))
    config = LidarSeedingConfig(voxel_size=0.05, min_points_per_actor=30, max_points_per_actor=200)
    seeds = seed_from_lidar(driving, sources, outputs.cameras, images, image_sweeps, config)
    assert seeds.background.num > 0 and bool(seeds.background.seen.any())
    assert set(seeds.actors) <= {track.track_id for track in driving.actors} and seeds.actors
    for track_id, part in seeds.actors.items():
        size = seeds.tracks[track_id].size_wlh
        half = torch.tensor([size[1], size[0], size[2]]) / 2 + 1e-5
        assert 30 <= part.num <= 200 and bool(torch.all(part.positions.abs() <= half)), track_id
    # No background point lies inside a box annotated on its own sweep.
    lidar = driving.lidar
    for sweep in sources:
        frame = int(lidar.frame_indices[sweep])
        mine = (seeds.background.times >= float(lidar.point_times[lidar.sweep_slice(sweep)].min())) & (
            seeds.background.times <= float(lidar.point_times[lidar.sweep_slice(sweep)].max())
        )
        for track, k in driving.actors_at(frame):
            pose = torch.from_numpy(track.poses[k]).double()
            local = (seeds.background.positions[mine].double() - pose[:3, 3]) @ pose[:3, :3]
            half = torch.tensor([track.size_wlh[1], track.size_wlh[0], track.size_wlh[2]]).double() / 2
            assert not bool(torch.all(local.abs() < half - 1e-4, dim=1).any()), (sweep, track.track_id)

    far = far_field_gaussians(FarFieldConfig(num_latitudes=4, num_longitudes=16), seeds.centre(), seeds.extent(),
                              outputs.cameras, images)  # fmt: skip
    scene = neural_driving_scene(seeds, far, latent_dim=4, generator=torch.Generator().manual_seed(0))
    assert isinstance(scene, DrivingScene) and scene.names_of("far") == ["far"]
    decoder = NeuralGaussianDecoder(latent_dim=4)
    first_image_time = float(outputs.cameras.times.min())
    # The cameras fire 50-62 ms before the LiDAR sweep the boxes are annotated on: without a hold, no actor is in
    # the first frame's images; one sweep interval of hold brings them all back.
    assert scene.scene_at(first_image_time, lambda kind, state: decoder(state)).num == seeds.background.num + far.num
    held = neural_driving_scene(seeds, far, latent_dim=4, generator=torch.Generator().manual_seed(0),
                                actor_hold_time=frame_hold_time(lidar))  # fmt: skip
    composed = held.scene_at(first_image_time, lambda kind, state: decoder(state))
    assert composed.num == held.num_gaussians and bool(torch.isfinite(composed.means).all())
