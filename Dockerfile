# syntax=docker/dockerfile:1
# The agent as a container image: the in-cluster controller (deploy/) and CI previews use it.
#   docker build -t modelops-agent .
#   docker run --rm -v "$PWD/examples/model-repo:/repo:ro" modelops-agent validate /repo
# The Deployment in deploy/ runs it as `agent run ...` (uid 65532, read-only root filesystem,
# HOME, the cache and the audit log on emptyDir volumes). Kubernetes probes /healthz and /readyz,
# so the image has no HEALTHCHECK.
#
# Reproducible: the base image is pinned by digest and every Python package by version
# (constraints.txt), so a rebuild next month installs the same files. Only the four Debian
# packages below come from bookworm's current point release.

# The base image, pinned by the digest of its multi-architecture index (the same digest serves
# amd64 and arm64): CPython 3.11.14 on Debian 12 "bookworm", slim. The digest decides what is
# pulled; the tag is for the reader. To move to a newer base (Debian security fixes land as new
# digests under the same tag), look up the index digest and put tag and digest here:
#   docker buildx imagetools inspect python:3.11-slim-bookworm     # the first "Digest:" line
#   docker run --rm python:3.11-slim-bookworm@sha256:<digest> python -V   # the patch version
# or override it for one build: docker build --build-arg PYTHON_IMAGE=python:...@sha256:... .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# --- build: wheels of the agent and of every dependency ------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# Exactly what the wheel is built from (pyproject's readme, the package, the JSON schemas that
# install as data files under <prefix>/share/modelops-agent/schemas), and the pinned versions
# of every runtime dependency.
COPY pyproject.toml README.md constraints.txt ./
COPY agent ./agent
COPY schemas ./schemas
# --constraint: each dependency at the version in constraints.txt, whatever PyPI has today.
# (The build backend, setuptools, is pyproject's build requirement in pip's isolated build
# environment; it only packs the agent's own pure-Python wheel.)
RUN pip wheel --constraint constraints.txt --wheel-dir /wheels . \
    && cp constraints.txt /wheels/constraints.txt

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# The agent's version (pyproject.toml's); tests/unit/test_dockerfile.py keeps them equal.
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="modelops-agent" \
      org.opencontainers.image.description="GitOps reconciliation agent for ML models: Git says which models serve, the agent makes it so." \
      org.opencontainers.image.source="https://github.com/acme/modelops-agent" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
# git for fetching the model repo (GitPython calls it), openssh-client for ssh:// remotes,
# ca-certificates for https:// ones. --verify-signatures: git checks SSH signatures with
# ssh-keygen (openssh-client) and OpenPGP ones with gpg (the gpg package alone: no agent or
# dirmngr is needed to verify against a keyring).
# safe.directory '*': git refuses to work in a repository owned by another uid than the
# caller's ("fatal: detected dubious ownership in repository"), which is what a repo mounted
# into the container is (`docker run -v "$PWD:/repo"`, a volume written by another user): the
# agent runs as uid 65532. The check protects a user from a hostile .git/config in someone
# else's directory; this image's only user is the agent, and it only reads repos it is given.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client ca-certificates gpg \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory '*' \
    && groupadd --gid 65532 agent \
    && useradd --uid 65532 --gid 65532 --home-dir /home/agent --create-home --shell /usr/sbin/nologin agent
# Only the wheels built above (--no-index: nothing is fetched at this stage; --constraint
# checks they are the pinned versions); pip compiles the bytecode now, so a read-only root
# filesystem costs nothing at start-up.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --disable-pip-version-check \
        --constraint /wheels/constraints.txt /wheels/*.whl \
    && agent --help > /dev/null
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/agent
USER 65532:65532
WORKDIR /home/agent
EXPOSE 8080
ENTRYPOINT ["agent"]
CMD ["run"]
