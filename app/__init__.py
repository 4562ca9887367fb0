"""prefloop's web application and domain code. `__version__` is the project's one version string."""

__version__ = "0.1.0"
