"""The old name of ``sphere.covariance`` (renamed; this alias goes in the next release).

``python -m sphere.stats ...`` (also ``torchrun -m sphere.stats ...``) still runs the
``sphere-covariance`` command, and ``from sphere.stats import precompute_stats`` still works; both
say so in one line (``FutureWarning: ...``, once per job under torchrun).
"""

from __future__ import annotations

import os
import sys

from sphere.covariance import TIMEOUT, CovarianceResult, Ranks, precompute_covariance, rank_device
from sphere.errors import warn_renamed

# The old names of what the package holds.
precompute_stats = precompute_covariance
StatsResult = CovarianceResult

__all__ = ["TIMEOUT", "Ranks", "StatsResult", "precompute_stats", "rank_device"]

if os.environ.get("RANK", "0") == "0":  # under torchrun: said by rank 0 only
    warn_renamed(
        "sphere.stats is renamed sphere.covariance: run `python -m sphere.covariance` (or "
        "`sphere-covariance`); sphere.stats goes in the next release"
    )

if __name__ == "__main__":
    from sphere.covariance.command import main

    sys.exit(main())
