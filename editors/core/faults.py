"""Named kill points: where a test makes the process die with SIGKILL, to prove that a run killed
at any point resumes to the same result.

``SPHERE_KILL_AT=<pattern>[:<n>]`` kills the process the n-th time (default the first) a point
whose name matches the ``fnmatch`` pattern is reached; unset, ``kill_point`` is a no-op costing an
environment lookup. The remaining count is kept in the environment variable itself, so there is no
module state. Points are named in docs/design.md ("Runs, checkpoints, resume").
"""

from __future__ import annotations

import fnmatch
import os
import signal

ENV = "SPHERE_KILL_AT"


def kill_point(name: str) -> None:
    """Die here (SIGKILL, no cleanup, like a cluster pre-emption) if ``SPHERE_KILL_AT`` says so."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    pattern, _, count = spec.rpartition(":") if spec.rsplit(":", 1)[-1].isdigit() else (spec, "", "1")
    if not fnmatch.fnmatchcase(name, pattern):
        return
    remaining = int(count)
    if remaining > 1:
        os.environ[ENV] = f"{pattern}:{remaining - 1}"
        return
    os.kill(os.getpid(), signal.SIGKILL)
