"""``python -m sphere`` is ``sphere-edit``."""

from sphere.cli.edit import main

main()
