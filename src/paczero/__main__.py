"""``python -m paczero`` runs the command line."""

import sys

from paczero.cli import main

sys.exit(main())
