"""The real kubectl against one test cluster, shared by the embedded and the kind session fixtures."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


class KubectlRunner:
    """Needs ``kubectl_path`` and ``kubeconfig``; a failing call is an AssertionError naming the command."""

    kubectl_path: Path
    kubeconfig: Path

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60,
                input: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([str(self.kubectl_path), *args], capture_output=True, text=True, timeout=timeout,
                                input=input, env={**os.environ, "KUBECONFIG": str(self.kubeconfig)})
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def json(self, *args: str):
        return json.loads(self.kubectl(*args, "-o", "json").stdout)
