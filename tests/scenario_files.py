"""Loading a scenario file that should fail, and finding a line in it: for the load-error tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlops_drill.errors import DrillError
from mlops_drill.scenarios.loader import load_scenario


def load_error(path: Path) -> str:
    """The one-line error loading ``path`` gives (the test fails if it loads)."""
    with pytest.raises(DrillError) as info:
        load_scenario(path)
    return str(info.value)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)
