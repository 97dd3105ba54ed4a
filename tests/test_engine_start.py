"""A start that fails half-way must leave the platform as healthy as it found it.

Before, the faults applied so far stayed applied with no session to name them, so
`mlops-drill reset` restored only the baseline's own objects (CI on kind: a start of
training-no-checkpoint timed out, and its re-created Job then broke the next deploy).
"""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.cluster


def test_a_start_whose_symptom_never_shows_reverts_its_faults(platform, monkeypatch):
    """The symptom never showing is made so here (the fault's own check is told to say no, with a 3 s limit):
    the one condition under test, on the real platform."""
    import mlops_drill.injector.faults  # noqa: F401  (registers every fault)
    from mlops_drill.errors import DrillError
    from mlops_drill.injector import baseline, engine
    from mlops_drill.injector.faults.remove_toleration import RemoveToleration

    ctx = platform
    monkeypatch.setattr(engine, "SYMPTOM_TIMEOUT_S", 3.0)
    monkeypatch.setattr(RemoveToleration, "verify_applied", lambda self, ctx: False)
    with pytest.raises(DrillError) as info:
        engine.start(ctx, "gpu-missing-toleration")
    message = str(info.value)
    assert "symptom of remove-toleration not observable after 3s" in message and "\n" not in message
    assert message.endswith("its faults were reverted and the baseline restored"), message
    assert engine.load_session(ctx) is None
    tolerations = ctx.get("deployment", "fraud-model", "serving")["spec"]["template"]["spec"].get("tolerations")
    assert any(t.get("key") == "nvidia.com/gpu" for t in tolerations or []), "the removed toleration is back"
    assert baseline.unhealthy(ctx) == []
