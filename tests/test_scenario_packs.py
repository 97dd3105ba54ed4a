"""Scenario packs as an instructor uses them: folders beside the catalogue, `scenario new | validate | selftest`,
and a fault from a separately installed package (the ``mlops_drill.faults`` entry-point group).

The example plugin is really built and installed with pip, into a folder of its own
(``pip install --target``) that the CLI subprocesses get on PYTHONPATH: the shared
venv stays as it is, so other tests' fault registries do not change under them.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "scenario-pack"
PLUGIN_SCENARIO = EXAMPLE / "scenarios" / "feature-store-unreachable.yaml"
CLI = [sys.executable, "-m", "mlops_drill.cli"]


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> str:
    """The example fault package built and installed by pip into a folder of its own."""
    work = tmp_path_factory.mktemp("plugin")
    source = work / "selector-fault"
    shutil.copytree(EXAMPLE / "selector-fault", source)  # the build writes egg-info beside the sources
    target = work / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                           "--no-build-isolation", "--target", str(target), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return str(target)


def _only_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {lines}"
    return lines[0]


# --------------------------------------------------------------------------- without a cluster

def test_pack_folder_is_listed_beside_the_catalogue(tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    pack.mkdir()
    shutil.copy(EXAMPLE / "scenarios" / "release-day-pileup.yaml", pack)
    by_option = run("--scenarios", str(pack), "scenarios")
    by_env = run("scenarios", env={"MLOPS_DRILL_SCENARIOS": f"{tmp_path / 'empty-but-absent'}"})
    by_command_option = run("scenarios", "--scenarios", str(pack))
    assert by_option.returncode == 0, by_option.stderr
    assert "release-day-pileup" in by_option.stdout and "gpu-missing-toleration" in by_option.stdout
    assert by_command_option.stdout == by_option.stdout
    assert by_env.returncode == 1 and "MLOPS_DRILL_SCENARIOS" in by_env.stderr and "does not exist" in by_env.stderr
    plain = run("scenarios", env={"MLOPS_DRILL_SCENARIOS": str(pack)})
    assert plain.stdout == by_option.stdout


def test_an_id_clash_is_one_line_naming_both_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        shutil.copy(EXAMPLE / "scenarios" / "release-day-pileup.yaml", folder)
    result = run("--scenarios", str(a), "--scenarios", str(b), "scenarios")
    line = _only_line(result.stderr)
    assert result.returncode == 1
    assert "release-day-pileup" in line and str(a / "release-day-pileup.yaml") in line \
        and str(b / "release-day-pileup.yaml") in line


def test_new_writes_a_commented_starter_that_validates(tmp_path: Path) -> None:
    made = run("scenario", "new", "my-incident", "--from", "stale-feature-cache", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    text = (tmp_path / "my-incident.yaml").read_text()
    assert re.search(r"^id: my-incident$", text, re.M)
    assert "# reference_solution:" in text and "# Fault `break-feature-refresh` params:" in text
    checked = run("scenario", "validate", str(tmp_path / "my-incident.yaml"))
    assert checked.returncode == 0 and "ok (my-incident" in checked.stdout, checked.stderr
    again = run("scenario", "new", "my-incident", "--from", "stale-feature-cache", "--dir", str(tmp_path))
    assert again.returncode == 1 and "already exists" in again.stderr


@pytest.mark.parametrize("edit, field, needle", [
    (("topics: [", "topic: ["), "topic", "topic: ["),
    (("difficulty: hard", "difficulty: brutal"), "difficulty", "difficulty: brutal"),
    (("  - name: remove-toleration", "  - name: remove-tolerations"), "faults.0.name", "remove-tolerations"),
    (("      taint_effect: NoSchedule", "      taint_efect: NoSchedule"), "faults.0.params.taint_efect", "taint_efect"),
])
def test_a_broken_file_is_one_line_with_file_line_and_field(tmp_path: Path, edit, field, needle) -> None:
    text = (EXAMPLE / "scenarios" / "release-day-pileup.yaml").read_text()
    assert edit[0] in text
    broken = tmp_path / "release-day-pileup.yaml"
    broken.write_text(text.replace(edit[0], edit[1], 1))
    line_no = next(i for i, line in enumerate(broken.read_text().splitlines(), 1) if needle in line)
    result = run("scenario", "validate", str(broken))
    assert result.returncode == 1
    line = _only_line(result.stderr)
    assert line.startswith(f"{broken}:{line_no}:") and f": {field}: " in line, line


def test_a_plugin_fault_is_unknown_until_its_package_is_installed(plugin_path: str) -> None:
    absent = run("scenario", "validate", str(PLUGIN_SCENARIO))
    assert absent.returncode == 1
    assert "faults.0.name: unknown fault 'service-selector-drift'" in _only_line(absent.stderr)
    present = run("scenario", "validate", str(PLUGIN_SCENARIO), env={"PYTHONPATH": plugin_path})
    assert present.returncode == 0, present.stderr
    listed = run("scenario", "faults", env={"PYTHONPATH": plugin_path})
    assert re.search(r"^service-selector-drift .*\[drill_selector_fault\]$", listed.stdout, re.M)
    assert "remove-toleration" in listed.stdout


def test_the_schema_knows_every_built_in_fault_and_nothing_else() -> None:
    """The scenario schema names built-ins without importing the injector; a fault added to one and not
    the other would make its scenarios fail to load (or a typo pass)."""
    import mlops_drill.injector.faults  # noqa: F401
    from mlops_drill.injector.fault import REGISTRY
    from mlops_drill.scenarios.schema import BUILTIN_FAULTS

    built_in = {name for name, cls in REGISTRY.items() if cls.__module__.startswith("mlops_drill.injector.faults.")}
    assert built_in == set(BUILTIN_FAULTS)


def test_a_broken_plugin_is_one_line_naming_it(tmp_path: Path) -> None:
    """A distribution whose entry point names a module that is not there (metadata only, as pip leaves it)."""
    info = tmp_path / "broken_faults-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-faults\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[mlops_drill.faults]\nhalf-fault = no_such_module:HalfFault\n")
    result = run("scenario", "faults", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 1
    line = _only_line(result.stderr)
    assert "'half-fault'" in line and "broken-faults 1.0" in line and "No module named 'no_such_module'" in line


# --------------------------------------------------------------------------- on the session cluster

@pytest.mark.cluster
def test_example_pack_passes_its_self_test(platform, cluster, plugin_path: str) -> None:
    """Both examples, each stage printed: start, symptom, reference solution, fix checks, grade >= 90, reset."""
    result = run("scenario", "selftest", str(EXAMPLE / "scenarios"), "--name", cluster.backend.name,
                 env={"PYTHONPATH": plugin_path}, timeout=1200)
    print(result.stdout)  # the stages and their seconds, for `pytest -rP` and CI logs
    assert result.returncode == 0, result.stdout + result.stderr
    for stage in ("load", "start", "symptom", "reference solution", "fix checks", "grade", "reset"):
        assert len(re.findall(rf"^  ok   {stage} ", result.stdout, re.M)) == 2, result.stdout
    assert "2/2 scenario(s) passed" in result.stdout


@pytest.mark.cluster
def test_instructor_folder_outside_the_repo_validates_starts_and_self_tests(platform, cluster, plugin_path: str,
                                                                           tmp_path: Path) -> None:
    pack = tmp_path / "course-pack"
    pack.mkdir()
    shutil.copy(PLUGIN_SCENARIO, pack)
    env = {"PYTHONPATH": plugin_path}
    checked = run("scenario", "validate", str(pack), env=env)
    assert checked.returncode == 0, checked.stderr
    started = run("--scenarios", str(pack), "start", "feature-store-unreachable", "--name", cluster.backend.name,
                  env=env, timeout=300)
    try:
        assert started.returncode == 0, started.stderr
        assert "503s from fraud-model" in started.stdout and "export KUBECONFIG=" in started.stdout
        # A later command without --scenarios still knows the drill: the session keeps its file.
        status = run("status", "--name", cluster.backend.name, env=env)
        assert "feature-store-unreachable: Predictions fail with 503" in status.stdout, status.stderr
        failing = run("verify", "--name", cluster.backend.name, env=env, timeout=300)
        assert failing.returncode == 1 and "FAIL" in failing.stdout
    finally:
        reset = run("reset", "--name", cluster.backend.name, env=env, timeout=300)
    assert reset.returncode == 0 and "baseline restored" in reset.stdout, reset.stderr
    selftest = run("scenario", "selftest", str(pack), "--name", cluster.backend.name, env=env, timeout=900)
    assert selftest.returncode == 0 and "1/1 scenario(s) passed" in selftest.stdout, selftest.stdout + selftest.stderr
