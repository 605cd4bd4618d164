"""``sphere-covariance``: the key covariance C for later runs, on one process or data-parallel under torchrun.

The command itself is ``sphere.covariance.command.main`` (so that ``python -m sphere.covariance`` and
``torchrun -m sphere.covariance`` run it without importing this layer); this module is its name among
the console scripts.
"""

from __future__ import annotations

import sys

from sphere.covariance.command import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
