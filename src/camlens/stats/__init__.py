"""Activation statistics during training: :class:`ActivationStats` and its plots."""

from .activation_stats import ActivationStats, LayerStats

__all__ = ["ActivationStats", "LayerStats"]
