"""Synthetic dynamic scenes with exact ground truth, written in the Nerfies / NeRF-DS format.

An analytic ray caster (planes, boxes, spheres, ellipsoids, capped cylinders; procedural textures;
ambient + Lambert + Blinn-Phong shading) renders tabletop scenes whose objects swing, spin,
translate or squash non-rigidly, seen by a NeRF-DS-like stereo rig: a handheld "left" camera
(training) and a "right" camera rigidly attached at a horizontal baseline (testing). Because every
motion is an analytic affine map of canonical (material) points, depth, optical flow and scene
flow are exact.

Library use::

    from fourd_ns.synthetic import generate_scene
    generate_scene("bell", "data/synth/bell", seed=0, num_frames=48, width=320, height=180)

Command line: ``fourd-synth --scene bell --out data/synth/bell``.
Presets: ``bell``, ``cup``, ``press``, ``random`` (see `presets.py`).

On-disk layout (T = num_frames, t = 0..T-1, ids ``left_%06d`` / ``right_%06d``)::

    dataset.json       {"count": 2T, "num_exemplars": T, "ids": [left..., right...],
                        "train_ids": [left_*], "val_ids": [right_*]}
    metadata.json      {id: {"warp_id": t, "appearance_id": t, "camera_id": 0 left | 1 right, "time_id": t}}
    scene.json         {"scale", "center": [3], "near", "far"}: position_scaled = (position - center) * scale;
                       near / far are ray distances in scaled coordinates
    camera/<id>.json   orientation (3x3 WORLD-TO-CAMERA rotation, rows = camera axes, OpenCV: x right,
                       y down, z forward), position (camera centre, world), focal_length,
                       principal_point [cx, cy], skew 0, pixel_aspect_ratio 1, radial_distortion [0, 0, 0],
                       tangential_distortion [0, 0], image_size [W, H]; all at 1x
    rgb/1x/<id>.png    uint8 RGB, W x H, area average of supersample^2 samples per pixel
    rgb/2x/<id>.png    uint8 RGB, W/2 x H/2, area-downsampled from the same supersampled render
    points.npy         float32 [N, 3] world (unscaled) SfM-like points: ~4000 surface points seen by the
                       left camera in the first frames, Gaussian noise 0.5% of the scene size
                       (1 / scale), 3% uniform outliers
    synthetic.json     provenance: generator, version, preset, seed, width, height, num_frames, ...
    per scale s in {1x, 2x} (intrinsics of 2x = 1x divided by 2):
    depth/<s>/<id>.npy         float32 [H, W] z-depth (camera z) in WORLD units, unscaled; always finite
                               (scenes are enclosed in a room)
    flow/<s>/<id>.npy          float32 [H, W, 2] forward optical flow (du, dv) in pixels of that scale, to
                               time t+1 of the SAME camera (left -> left, right -> right)
    scene_flow/<s>/<id>.npy    float32 [H, W, 3] world displacement of the surface point from t to t+1;
                               exactly zero on static objects
    dynamic_mask/<s>/<id>.png  uint8 [H, W], 255 where the pixel sees an object that moves or deforms
                               during the clip (not only between t and t+1), 0 elsewhere

Conventions: time tau = time_id / (T - 1) in [0, 1]. Pixel (row i, column j) has its centre at
(j + 0.5, i + 0.5), so the pixel seen at (u, v) = (j + 0.5, i + 0.5) moves to (u, v) + flow[i, j].
Depth, flow, scene flow and the mask are sampled with one ray through each pixel centre of that
scale (never averaged across edges). For the last frame (t = T-1) flow and scene flow are zeros.
Flow is *not* masked for occlusion: it is the projection of the same material point at t+1 even
when that point is hidden or outside the image at t+1.
"""

from fourd_ns.synthetic.generate import generate_scene
from fourd_ns.synthetic.presets import PRESETS

__all__ = ["PRESETS", "generate_scene"]
