"""Time-dependent deformation fields that move canonical Gaussians to a time t."""
