# Two entry points for a fresh machine (see README.md): `make demo` and `make test`.
# Each installs what it needs: a virtualenv with the agent (and the local environment, devenv/:
# importable from the venv and run as .venv/bin/devenv, never part of the agent's wheel), Debian's prometheus (promtool),
# chromium (the web UI's browser test) and the local control plane built from the Go module proxy (cached under ~/.cache); `test`
# also the local Git forge (Gitea, tools/gitea), built the same way, and the local model registry
# (MLflow in its own venv, tools/mlflow) and the SOPS tools (sops, age; tools/sops) the tests encrypt with.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

# devenv/ (the local control plane, forge, Prometheus and MLflow starters, the demo) stays in
# the checkout: a .pth file in the venv's site-packages puts the checkout on the venv's path, and
# .venv/bin/devenv runs `python -m devenv` with the venv's interpreter.
DEVENV_PTH = modelops-devenv.pth

.PHONY: venv system controlplane forge registry secrets test unit lint demo

$(BIN)/agent: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(BIN)/devenv: $(BIN)/agent
	echo "$(CURDIR)" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/$(DEVENV_PTH)"
	printf '#!/bin/sh\nexec "%s" -m devenv "$$@"\n' "$(abspath $(BIN))/python" > $@
	chmod +x $@

venv: $(BIN)/agent $(BIN)/devenv

# chromium + chromium-driver + fonts: the web UI's browser test (tests/integration/test_ui_browser.py;
# Playwright drives Debian's Chromium, never a browser it downloads)
system:
	@command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }
	@command -v git >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git >/dev/null; }
	@command -v gpg >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gpg >/dev/null; }
	@command -v ssh-keygen >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-client >/dev/null; }
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && test -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-dejavu-core >/dev/null; }

controlplane:
	bash tools/k8s/build.sh

forge:
	bash tools/gitea/build.sh

registry:
	bash tools/mlflow/setup.sh

secrets:
	bash tools/sops/build.sh

lint: venv
	$(BIN)/ruff check agent devenv tests bench tools
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: venv system
	$(BIN)/pytest -q tests/unit

test: venv system controlplane forge registry secrets
	$(BIN)/pytest -q tests

demo: venv controlplane
	$(BIN)/devenv demo
