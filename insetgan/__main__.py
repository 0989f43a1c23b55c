"""``python -m insetgan`` runs the command line."""
from insetgan.cli import main

main()
