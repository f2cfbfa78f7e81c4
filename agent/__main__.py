"""`python -m agent` is the same as the `agent` console command."""

from agent.cli import main

raise SystemExit(main())
