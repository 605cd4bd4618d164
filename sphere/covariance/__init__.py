"""The key covariance C = E[k kᵀ] of a run's edited layers, computed ahead of the run
(``sphere-covariance``, ``python -m sphere.covariance``), data-parallel over processes with
``torch.distributed`` when started by torchrun.

    torchrun --nproc-per-node 8 -m sphere.covariance model=llama3-8b model.covariance.corpus=wikipedia \\
        model.covariance.n_samples=100000
    python -m sphere.covariance model=smollm2-135m          # one process (no torchrun): the same files

The overrides are ``sphere-edit``'s: the files written are those a ``sphere-edit`` with the same
``model``, ``model.covariance``, ``run.seed``, ``run.cache_dir`` and edited layers (``editor.layers``)
reads, under the same cache key (``sphere.run.covariance``), so that run finds them and collects
nothing. Each of the ``world`` processes reads the same corpus draw and runs every ``world``-th text
through its own copy of the model (``collect_second_moments(shard=(rank, world))``); the sums
Σ k kᵀ and the token counts are summed over processes (``all_reduce``) and rank 0 writes C = sum /
count, atomically, where the runner looks. See docs/distributed.md.

Modules: ``precompute`` (``precompute_covariance``: the collection and the writes), ``processes``
(``Ranks``: this process's place in the job, its device, the collectives' ``TIMEOUT``), ``command``
(the ``sphere-covariance`` command line, also ``python -m sphere.covariance``).
"""

from sphere.covariance.precompute import CovarianceResult, precompute_covariance
from sphere.covariance.processes import TIMEOUT, Ranks, rank_device

__all__ = ["TIMEOUT", "CovarianceResult", "Ranks", "precompute_covariance", "rank_device"]
