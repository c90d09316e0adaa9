"""`python -m gradbench ...`, the same as the `gradbench` command (for a checkout that is not installed)."""
import sys

from .cli import main

sys.exit(main())
