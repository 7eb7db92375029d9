"""Neural-network building blocks shared by methods: the sparse 3D convolution package (``networks.sparse``) that
the g3r and flux4d networks are built on."""
