"""Torch-side access to generated stores."""

from mi_datagen.data.dataset import MIDataset

__all__ = ["MIDataset"]
