"""Distillation: losses, distillers, sandwich training."""
