"""Distillation: losses, distillers, sandwich training."""

from edgedistill.distill import udon  # noqa: F401  (registers the udon distillers in DISTILLERS)
