"""Driving-scene sensor data shared by dataparsers, datasets and models: LiDAR sweeps, actor tracks, and the one
metadata structure (`driving_metadata.py`) that real (PandaSet) and synthetic driving logs fill the same way."""
