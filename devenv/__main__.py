"""`python -m devenv ...`: what `.venv/bin/devenv` runs."""

import sys

from devenv.cli import main

sys.exit(main())
