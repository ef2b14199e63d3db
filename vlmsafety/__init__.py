"""vlmsafety: layer-wise and cross-modal safety experiments on open vision-language models."""

__version__ = "0.1.0"
