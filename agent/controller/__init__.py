"""The in-cluster controller: agent run."""
