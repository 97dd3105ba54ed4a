"""Which variant a suite runs of a parameterised scenario, so every run of it draws the same incident."""
from __future__ import annotations


def far_variant_seed(sc, first: int = 1_000_003) -> int | None:
    """For a parameterised scenario, the first seed whose draw differs from the original incident in every
    parameter (another node, product, version, ...): a suite that runs one variant (kind, seats) then runs one
    the embedded suite's first seeds need not, the same one in every run, so a failure can be run again."""
    from mlops_drill.scenarios.variants import draw

    if not sc.parameters:
        return None
    original = {name: p.values()[0] for name, p in sc.parameters.items()}
    return next(seed for seed in range(first, first + 10_000)
                if all(v != original[k] or len(sc.parameters[k].values()) == 1 for k, v in draw(sc, seed).items()))
