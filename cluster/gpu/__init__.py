"""Fake NVIDIA GPU layer: one inventory model, several faces."""
