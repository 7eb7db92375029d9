"""Synthetic driving logs in PandaSet's on-disk layout, with exact ground truth.

A seeded straight street (`street.py`: lanes with markings, sidewalks, buildings with window facades, lamp posts,
parked and moving vehicles, articulated pedestrians, a sky dome) is ray cast by the engine of
`fourd_ns.synthetic` (`cast_rays`, `render_rgb`, its shapes, motions, materials) from an ego car that drives down the
street with PandaSet's three front cameras and a spinning 64-beam LiDAR (`ego_rig.py`, `lidar_scan.py`). Logs are
written exactly like real PandaSet logs (`pandaset_writer.py`), so the `pandaset-data` dataparser reads them, plus a
``synthetic.json`` marker and ground-truth extras.

Modules: `street.py` (seeded layout and scene), `actors.py` (vehicles, articulated pedestrians, cuboids),
`trajectories.py` (actor paths and part motions; motion time = seconds), `textures.py` / `sky.py` (road, facades,
unlit sky dome), `slab_box.py` (a faster `Box` intersection), `culling.py` (bounding-sphere culling in front of
`cast_rays`), `surface_truth.py` (albedo, instance, position and velocity of hit points), `camera_views.py`
(tiled rendering and per-pixel truth), `lidar_scan.py`, `ego_rig.py`, `pandaset_writer.py`, `generate.py`.

Library use::

    from fourd_ns.synthetic.driving import generate_driving_scene, generate_driving_scenes
    generate_driving_scene("data/synth_driving/000", seed=0)              # preset 'default'
    generate_driving_scenes("data/synth_driving", num_scenes=8, first_seed=0, config="small")

Command line: ``fourd-synth-driving --out data/synth_driving --num-scenes 8 --first-seed 0``.

Conventions: world z up, metres (PandaSet's); the ego starts at the world origin, the street runs along a seeded
heading. Scene time t (s) = Unix time - ``start_time_unix`` (``synthetic.json``). Frame k (NN = ``%02d`` of k):
LiDAR sweep over t in [0.1 k, 0.1 (k + 1)], timestamp = its end (also ``meta/timestamps.json``, the time of the
cuboids, GPS and LiDAR pose); camera c fires at that timestamp + its mount offset (front -0.0499 s, front_left
-0.0606 s, front_right -0.0391 s, as in PandaSet log 002). Cameras are global-shutter pinholes.

On-disk layout of one log (folder ``<seq>``, e.g. ``000``)::

    camera/<cam>_camera/NN.jpg            RGB, W x H (default 480 x 270), JPEG quality 95, 2 x 2 supersampled
    camera/<cam>_camera/intrinsics.json   {"fx", "fy", "cx", "cy"}: PandaSet's scaled by W / 1920 (cy: H / 1080)
    camera/<cam>_camera/poses.json        [{"position": {x, y, z}, "heading": {w, x, y, z}}] camera -> world,
                                          OpenCV camera axes (x right, y down, z forward)
    camera/<cam>_camera/timestamps.json   [Unix s]
    lidar/NN.pkl.gz                       gzipped pickled DataFrame: x, y, z float64 (world), i float64 (0..255,
                                          integer-valued), t float64 (Unix s per point), d int64 (0 = spinning
                                          LiDAR); index named 'index'. Order: increasing sweep angle, then beam
    lidar/poses.json                      LiDAR sensor -> world at each sweep's end (sensor axes x right,
                                          y forward, z up, like PandaSet's headings), same dict format
    lidar/timestamps.json                 [Unix s] sweep ends
    annotations/cuboids/NN.pkl.gz         gzipped pickled DataFrame, PandaSet's 17 columns and dtypes: uuid,
                                          label ('Car', 'Pickup Truck', 'Medium-sized Truck', 'Pedestrian'), yaw,
                                          stationary (True for parked cars), camera_used, position.x/y/z (box centre,
                                          world), dimensions.x/y/z (width, length, height),
                                          attributes.object_motion ('Moving' / 'Parked' / NaN for pedestrians),
                                          cuboids.sibling_id ('-'), cuboids.sensor_id (-1),
                                          attributes.rider_status (NaN), attributes.pedestrian_behavior ('Walking'),
                                          attributes.pedestrian_age ('Adult'). Heading = Rz(yaw) (0, 1, 0).
    meta/timestamps.json                  [Unix s] = lidar/timestamps.json
    meta/gps.json                         [{"lat", "long", "height", "xvel", "yvel"}]: world x = east, y = north
    synthetic.json                        provenance: generator, version, seed, full config, start time, street
                                          layout, actors (uuid, label, instance id, motion parameters)
    ground_truth/instances.json           {"background": 0, "sky": 65535,
                                           "instances": [{"id", "uuid", "label", "stationary"}]}
    ground_truth/<cam>_camera/depth/NN.npy       float32 [H, W] camera z-depth (m) through pixel centres; inf on sky
    ground_truth/<cam>_camera/instance/NN.png    uint16 [H, W] instance id: 0 static scenery, 65535 sky, else an
                                                 actor's id (instances.json maps it to the cuboid uuid)
    ground_truth/<cam>_camera/scene_flow/NN.npy  float32 [H, W, 3] world displacement (m) of the seen surface point
                                                 from this image's time to the same camera's next frame (+0.1 s);
                                                 zero on static scenery and the sky; zeros in the last frame
    ground_truth/lidar/NN.npz             rows = rows of lidar/NN.pkl.gz:
                                          velocity float32 [P, 3]   world velocity (m/s) of the hit surface point at
                                                                    its capture time t
                                          instance uint16 [P]       instance id (never 65535: no sky returns)
                                          scene_flow float32 [P, 3] displacement of that point from t to t + 0.1 s
                                                                    (zeros in the last frame)
                                          origin float64 [P, 3]     LiDAR centre the ray left from (at time t)
                                          beam int16 [P]            beam index (0 = top, +15°; 63 = bottom, -25°)
                                          sweep_angle float32 [P]   degrees clockwise from the ego's rear

LiDAR time sampling is exact for 36 sectors per sweep, not per column: see `lidar_scan.py`. Parked cars and
scenery are static (exactly zero flow); vehicles drive at constant speed (some change lanes), pedestrians walk
with swinging arms and legs (non-rigid: their cuboid contains every limb at all times).
"""

from fourd_ns.synthetic.driving.generate import (
    DRIVING_PRESETS,
    DrivingSceneConfig,
    build_driving_scene,
    generate_driving_scene,
    generate_driving_scenes,
)

__all__ = [
    "DRIVING_PRESETS",
    "DrivingSceneConfig",
    "build_driving_scene",
    "generate_driving_scene",
    "generate_driving_scenes",
]
