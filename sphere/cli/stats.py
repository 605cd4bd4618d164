"""``sphere-stats``: key statistics for later runs, on one process or data-parallel under torchrun.

The command itself is ``sphere.stats.command.main`` (so that ``python -m sphere.stats`` and
``torchrun -m sphere.stats`` run it without importing this layer); this module is its name among
the console scripts.
"""

from __future__ import annotations

import sys

from sphere.stats.command import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
