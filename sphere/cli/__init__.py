"""Command-line entry points (thin layers over ``sphere.api``): sphere-edit."""
