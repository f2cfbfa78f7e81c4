# Two entry points for a fresh machine (see README.md): `make demo` and `make test`.
# Each installs what it needs: a virtualenv with the agent, Debian's prometheus (promtool)
# and the local control plane built from the Go module proxy (cached under ~/.cache); `test`
# also the local Git forge (Gitea, tools/gitea), built the same way, and the local model registry
# (MLflow in its own venv, tools/mlflow) and the SOPS tools (sops, age; tools/sops) the tests encrypt with.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv system controlplane forge registry secrets test unit lint demo

$(BIN)/agent: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/agent

system:
	@command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }
	@command -v git >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git >/dev/null; }
	@command -v gpg >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gpg >/dev/null; }
	@command -v ssh-keygen >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-client >/dev/null; }

controlplane:
	bash tools/k8s/build.sh

forge:
	bash tools/gitea/build.sh

registry:
	bash tools/mlflow/setup.sh

secrets:
	bash tools/sops/build.sh

lint: venv
	$(BIN)/ruff check agent tests bench tools
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: venv system
	$(BIN)/pytest -q tests/unit

test: venv system controlplane forge registry secrets
	$(BIN)/pytest -q tests

demo: venv controlplane
	$(BIN)/agent demo
