"""``python -m inspector`` runs the ``graphinspect`` command."""

import sys

from inspector.cli import main

sys.exit(main())
