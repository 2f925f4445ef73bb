"""``python -m reglab`` runs the CLI."""

import sys

from reglab.cli import main

sys.exit(main())
