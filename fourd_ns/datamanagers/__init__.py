"""Datamanagers: nerfstudio's full-image datamanager made safe for CPU-only machines."""
