"""The edited weights a figure needs from a run directory: the final W and the unedited W₀ of one
edited layer, read through the run directory's contract (:func:`sphere.run.rundir.read_layer_weights`,
the only reader of a run's tensors)."""

from __future__ import annotations

from sphere.run.rundir import layer_key, read_layer_weights

__all__ = ["layer_key", "read_layer_weights"]
