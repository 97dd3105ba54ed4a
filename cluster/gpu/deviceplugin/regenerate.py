"""Regenerate ``api_pb2.py``, ``api_pb2.pyi`` and ``api_pb2_grpc.py`` from ``api.proto``.

Run after editing the proto: ``python cluster/gpu/deviceplugin/regenerate.py`` (as a plain
script, so it works even when the package cannot import its stale or missing modules).

Two things differ from a plain ``protoc api.proto`` run, both on purpose:

* the proto is compiled under its repository path (``cluster/gpu/deviceplugin/api.proto``),
  because protobuf keeps one process-wide pool keyed by file name and a bare ``api.proto``
  would clash with any other generated API of that name (CRI, plugin registration, ...);
* the generator writes an absolute import of ``api_pb2`` into ``api_pb2_grpc.py``, which only
  works with this folder on ``sys.path``; it is rewritten to a package-relative import.

Needs grpcio-tools (test extra).
"""
from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
PROTO_NAME = HERE.relative_to(REPO_ROOT).as_posix() + "/api.proto"
_ABSOLUTE_IMPORT = re.compile(r"^from [\w.]+ import api_pb2 as (\w+)$", re.MULTILINE)
GENERATED = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py")


def _protoc(args: list[str]) -> None:
    import grpc_tools  # imported late: only whoever regenerates needs grpcio-tools
    from grpc_tools import protoc

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    code = protoc.main(["grpc_tools.protoc", f"-I{REPO_ROOT}", f"-I{include}", *args, PROTO_NAME])
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code} on {REPO_ROOT / PROTO_NAME}")


def generate(out_dir: Path = HERE) -> list[Path]:
    """Write the three generated modules into ``out_dir`` and return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        _protoc([f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}"])
        produced = Path(tmp) / Path(PROTO_NAME).parent
        for name in GENERATED:
            shutil.copyfile(produced / name, out_dir / name)
    grpc_module = out_dir / "api_pb2_grpc.py"
    fixed, count = _ABSOLUTE_IMPORT.subn(r"from . import api_pb2 as \1", grpc_module.read_text())
    if count != 1:
        raise RuntimeError(f"{grpc_module}: expected one absolute api_pb2 import, found {count}")
    grpc_module.write_text(fixed)
    return [out_dir / name for name in GENERATED]


def descriptor_set(out_file: Path) -> bytes:
    """The compiled FileDescriptorSet of api.proto, to check the committed modules are current."""
    _protoc([f"--descriptor_set_out={out_file}"])
    return out_file.read_bytes()


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(path)
