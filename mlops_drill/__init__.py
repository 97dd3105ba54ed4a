"""mlops-drill: fault-injection troubleshooting simulator for MLOps and model serving.

One flat facade over the parts (kopf-style layering):

* building blocks: :mod:`mlops_drill.paths`, :mod:`mlops_drill.errors`
* the cluster: :mod:`mlops_drill.cluster` (binaries, backends, node pools, fake GPUs)
* the platform under test: :mod:`mlops_drill.mlplatform`
* scenarios, faults and grading: :mod:`mlops_drill.scenarios`,
  :mod:`mlops_drill.injector`, :mod:`mlops_drill.grader`

Layers import downward only: the CLI sits on top of everything.
"""
from mlops_drill.errors import DrillError

__version__ = "0.1.0"
__all__ = ["DrillError", "__version__"]
