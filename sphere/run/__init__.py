"""The experiment: validated settings, the sequential loop, the key covariance's cache, checkpoints, tracking,
and the run directory's contract (``rundir``: its files, summary and readers, which the report reads)."""
