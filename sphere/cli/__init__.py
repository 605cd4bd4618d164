"""Command-line entry points (thin layers over ``sphere.api``): sphere-edit, sphere-eval, sphere-export,
sphere-report, sphere-covariance (sphere-stats: its old name), sphere-bench."""
