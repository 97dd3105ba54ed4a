"""Maps the one import namespace `mlops_drill` onto the repo's top-level folders.

The product's parts live in `cluster/`, `injector/`, `grader/`, `scenarios/` and
`mlplatform/` at the top of the repo, but they install only as
`mlops_drill.<part>`: nothing generic like `cluster` or `grader` lands in
site-packages.
"""
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
PARTS = {"mlops_drill": "mlops_drill", **{f"mlops_drill.{p}": p for p in
         ("cluster", "injector", "grader", "scenarios", "mlplatform")}}


def _packages() -> list[str]:
    found = []
    for name, folder in PARTS.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / folder)
            found.append(".".join([name, *rel.parts]))
    return found


setup(
    package_dir=PARTS,
    packages=_packages(),
    package_data={"": ["*.yaml", "*.json", "*.txt", "*.proto", "go.mod", "go.sum", "*.go", "*.sh"]},
    include_package_data=True,
)
