"""Go wrapper modules and the code that builds the control plane from them.

The binaries are built once into the user's cache (see :mod:`.binaries`) and
reused by every cluster; building needs only ``go`` and the Go module proxy.
"""
from mlops_drill.cluster.toolchain.binaries import COMPONENTS, Toolchain, ensure_toolchain

__all__ = ["COMPONENTS", "Toolchain", "ensure_toolchain"]
