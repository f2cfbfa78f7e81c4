"""The agent's local environment: never shipped (not in the wheel, not in the image).

`devenv.cluster` starts a local Kubernetes control plane, Gitea, Prometheus and MLflow for the
tests and the demo; `devenv.demo` tells the agent's story on them. `make venv` makes this package
importable from the project's virtualenv and installs its command, `.venv/bin/devenv`:

    devenv demo [--dir DIR] [--keep] [--promotion]
    devenv cluster up|down|status [--dir DIR]

(devenv.cli is that command; this package imports nothing, so `devenv.cluster` alone stays light.)
"""
