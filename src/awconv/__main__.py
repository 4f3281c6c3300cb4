"""``python -m awconv`` runs the command line."""

import sys

from awconv.cli import main

sys.exit(main())
