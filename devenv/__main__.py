"""`python -m devenv ...`: what `.venv/bin/devenv` runs."""

import sys

from devenv import main

sys.exit(main())
