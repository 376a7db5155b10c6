"""mi-datagen: realistic multimodal datasets whose mutual information is known exactly."""

__version__ = "0.1.0"
