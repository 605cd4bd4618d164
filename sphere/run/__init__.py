"""The experiment: validated settings, the sequential loop, statistics wiring, checkpoints, tracking."""
