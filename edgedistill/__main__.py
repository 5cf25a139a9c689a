"""`python -m edgedistill ...` (also what torchrun launches)."""

from edgedistill.cli import main

main()
