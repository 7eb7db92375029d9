"""Synthetic driving logs read back through ``pandaset-data``: what the parser returns (cameras, actor tracks,
LiDAR depth) must be exactly what the generator put into the street, mapped through the parser's documented world
transform (``p_out = (world_from_log @ p_log) / metres_per_unit``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fourd_ns.dataparsers.pandaset_dataparser import PandaSetDataParserConfig
from fourd_ns.geometry.camera_conventions import switch_c2w_camera_axes
from fourd_ns.sensors.driving_metadata import get_driving_metadata
from fourd_ns.sensors.lidar_projection import lidar_depth_map_for_camera
from fourd_ns.synthetic.driving import build_driving_scene, generate_driving_scene
from fourd_ns.synthetic.driving.ego_rig import PANDASET_FRONT_CAMERAS, mounted_camera
from fourd_ns.synthetic.driving.generate import lidar_timestamp

SEED = 3
CAMERAS = ("front", "front_left", "front_right")


@pytest.fixture(scope="module")
def parsed(tmp_path_factory):
    log = tmp_path_factory.mktemp("driving") / "003"
    generate_driving_scene(log, seed=SEED, config="small")
    config = PandaSetDataParserConfig(data=log, cameras=CAMERAS, downscale_factor=1, split_mode="all")
    outputs = config.setup().get_dataparser_outputs(split="train")
    return log, outputs, build_driving_scene(SEED, "small")


def _to_log(driving_metadata, points_out: np.ndarray) -> np.ndarray:
    """Output-world points [N, 3] back in the log's world (metres)."""
    transform = driving_metadata.world_from_log
    return (points_out * driving_metadata.metres_per_unit - transform[:3, 3]) @ transform[:3, :3]


def test_cameras_are_the_generator_cameras(parsed):
    _, outputs, street = parsed
    meta = get_driving_metadata(outputs.metadata)
    assert meta is not None and meta.synthetic
    rotation_log = meta.world_from_log[:3, :3].T
    c2w_opencv = switch_c2w_camera_axes(outputs.cameras.camera_to_worlds.double()).numpy()
    for i, (camera_id, frame) in enumerate(zip(outputs.metadata["camera_ids"], outputs.metadata["frame_indices"])):
        mount = PANDASET_FRONT_CAMERAS[meta.camera_names[int(camera_id)]]
        truth = mounted_camera(mount, street.ego, lidar_timestamp(int(frame)) + mount.time_offset, 96, 54)
        centre = _to_log(meta, c2w_opencv[i, :3, 3][None])[0]
        np.testing.assert_allclose(centre, truth.position, atol=1e-4)
        np.testing.assert_allclose(rotation_log @ c2w_opencv[i, :3, :3], truth.rotation.T, atol=1e-5)
        assert float(outputs.cameras.fx[i]) == pytest.approx(truth.focal, rel=1e-6)
        assert float(outputs.cameras.cx[i]) == pytest.approx(truth.principal_point[0], rel=1e-6)


def test_actor_tracks_are_the_generator_actors(parsed):
    _, outputs, street = parsed
    meta = get_driving_metadata(outputs.metadata)
    tracks = {track.track_id: track for track in meta.actors}
    assert set(tracks) == {actor.uuid for actor in street.actors}
    rotation_log = meta.world_from_log[:3, :3].T
    for actor in street.actors:
        track = tracks[actor.uuid]
        assert track.label == actor.label and track.stationary == actor.stationary
        np.testing.assert_allclose(track.size_wlh * meta.metres_per_unit, actor.size_wlh, rtol=1e-5)
        for k, frame in enumerate(track.frame_indices):
            centre, heading = actor.box(lidar_timestamp(int(frame)))
            np.testing.assert_allclose(_to_log(meta, track.poses[k, :3, 3][None])[0], centre, atol=1e-4)
            length_axis = rotation_log @ track.poses[k, :3, 0]
            assert math.atan2(length_axis[1], length_axis[0]) == pytest.approx(
                math.atan2(math.sin(heading), math.cos(heading)), abs=1e-5
            )


def test_lidar_depth_matches_the_ray_caster_depth(parsed):
    """The parsed sweep projected into the parsed camera gives the generator's z-depth (static scenery, where the
    LiDAR's 0.1 s sweep and the camera's capture time see the same surface)."""
    log, outputs, _ = parsed
    meta = get_driving_metadata(outputs.metadata)
    from PIL import Image

    compared = 0
    for i, (camera_id, frame) in enumerate(zip(outputs.metadata["camera_ids"], outputs.metadata["frame_indices"])):
        name = meta.camera_names[int(camera_id)]
        sweep = meta.lidar.sweep(int(outputs.metadata["lidar_sweep_index"][i]))
        lidar = lidar_depth_map_for_camera(sweep["points"], outputs.cameras[i : i + 1]).numpy() * meta.metres_per_unit
        truth = np.load(log / "ground_truth" / name / "depth" / f"{int(frame):02d}.npy")
        static = np.asarray(Image.open(log / "ground_truth" / name / "instance" / f"{int(frame):02d}.png")) == 0
        returns = (lidar > 0) & static & np.isfinite(truth)
        relative = np.abs(lidar[returns] - truth[returns]) / truth[returns]
        compared += int(returns.sum())
        # A LiDAR point lands anywhere inside its pixel while the truth is cast through the pixel centre, and the
        # sensor sits ~0.5 m from the camera (a few see-through returns at occlusion edges).
        assert np.median(relative) < 0.02, (name, frame)
        assert np.mean(relative < 0.05) > 0.85, (name, frame)
    assert compared > 500
