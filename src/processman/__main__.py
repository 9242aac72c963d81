"""``python -m processman``."""

from processman.app.cli import main

main()
