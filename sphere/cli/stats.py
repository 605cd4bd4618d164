"""``sphere-stats``: the old name of ``sphere-covariance`` (renamed; this alias goes in the next
release). It runs the same command after a one-line ``FutureWarning``."""

from __future__ import annotations

import sys

from sphere.covariance.command import main as covariance_main
from sphere.errors import warn_renamed


def main(argv: list[str] | None = None) -> int:
    warn_renamed("sphere-stats is renamed sphere-covariance; sphere-stats goes in the next release")
    return covariance_main(argv)


if __name__ == "__main__":
    sys.exit(main())
