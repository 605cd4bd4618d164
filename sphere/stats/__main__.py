"""``python -m sphere.stats`` (also under ``torchrun -m sphere.stats``) is ``sphere-stats``."""

import sys

from sphere.stats.command import main

sys.exit(main())
