"""Neural networks of the driving methods: ``networks.sparse`` (sparse 3D convolution, voxelisation and the sparse
residual U-Net, shared by g3r and flux4d) and, beside it, the method networks built on it."""
