"""diod_ray: DIOD (CVPR 2024) motion-guided object discovery, trained and swept on Ray."""

__version__ = "0.1.0"
