"""Driving scenes in plain torch, shared by g3r and flux4d: Gaussian parts, rigid actors, far field, LiDAR seeds.

``gaussian_params`` (activated world-space Gaussians), ``neural_gaussians`` (G3R's state + decoder),
``rigid_actors`` (box poses at a time, moving Gaussian sets), ``far_field`` (sky / far buildings grid),
``point_colours`` (colours from posed images), ``lidar_seeding`` (seed points per part), ``driving_scene`` (named
parts composed at a time) and ``neural_scene`` (seeds -> a scene of neural states).
"""
