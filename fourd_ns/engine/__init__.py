"""fourd_ns's extensions of nerfstudio's training engine."""
