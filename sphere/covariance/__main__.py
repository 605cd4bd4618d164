"""``python -m sphere.covariance`` (also under ``torchrun -m sphere.covariance``) is ``sphere-covariance``."""

import sys

from sphere.covariance.command import main

sys.exit(main())
