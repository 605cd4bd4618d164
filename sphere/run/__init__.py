"""The experiment: validated settings, the sequential loop, statistics wiring, checkpoints, tracking,
and the run directory's contract (``rundir``: its files, summary and readers, which the report reads)."""
