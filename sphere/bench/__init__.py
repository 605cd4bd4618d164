"""``sphere-bench``: every stage timed against a reference-style path in the same process.

Results are ratios (reference-style time / ours) measured on the same machine, inputs and thread
count, so they transfer between machines far better than absolute times. The reference-style paths
live here only (``sphere.bench.reference``): they reproduce the reference code's approach (spec
§7.2) so that the comparison is honest, and nothing else in the package imports them.
"""
