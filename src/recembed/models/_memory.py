"""Memory planning for closed-form models: refuse early, with numbers, instead of crashing."""

from __future__ import annotations

from ..errors import ResourceError
from ..options import FitOptions


def budget_bytes(options: FitOptions) -> int:
    """Bytes a fit may plan for: the option's cap, else 90% of what the machine has available."""
    if options.memory_budget_mb is not None:
        return int(options.memory_budget_mb) * 2**20
    import psutil

    return int(psutil.virtual_memory().available * 0.9)


def require(needed: int, options: FitOptions, what: str, hint: str) -> None:
    budget = budget_bytes(options)
    if needed > budget:
        raise ResourceError(
            f"{what} needs about {needed / 2**30:.1f} GiB but only {budget / 2**30:.1f} GiB is available; {hint}"
        )
