"""Text templates cut from real H100 captures (``../shared/reference/nvidia-smi-h100``).

They ship inside the package because the shared captures are not installed with it;
``{placeholders}`` mark the values the GPU model fills in.
"""
