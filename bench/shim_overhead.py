"""What recording costs per command: a shimmed tool vs the tool itself, and the history hook.

Why measure: every kubectl/curl the candidate types goes through the shim, and
every prompt runs the history hook; a sluggish shell would change how people
work. Prints milliseconds per call (mean of N runs, stdout a pipe).

Usage: .venv/bin/python bench/shim_overhead.py [N]
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlops_drill.grader.shell import write_shims
from mlops_drill.grader.shims import recorder


def _per_call(argv: list[str], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    return (time.perf_counter() - t0) / n * 1000


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    true = Path("/bin/true")
    with tempfile.TemporaryDirectory() as tmp:
        transcript = Path(tmp) / "t.jsonl"
        write_shims(Path(tmp) / "bin", transcript, {"kubectl": true})
        direct = _per_call([str(true)], n)
        shimmed = _per_call([str(Path(tmp) / "bin" / "kubectl"), "get", "pods"], n)
        hook = _per_call([sys.executable, "-IS", recorder.__file__, "--shell", str(transcript),
                          "0", "1700000000000000", "1700000000500000", tmp, "kubectl get pods"], n)
        lines = transcript.read_text().count("\n")
    print(f"direct /bin/true:          {direct:6.1f} ms per call")
    print(f"through the kubectl shim:  {shimmed:6.1f} ms per call "
          f"(+{shimmed - direct:.1f} ms recording overhead)")
    print(f"history hook per prompt:   {hook:6.1f} ms per call")
    print(f"({n} runs each; {lines} events written)")


if __name__ == "__main__":
    main()
