# syntax=docker/dockerfile:1
# The agent as a container image: the in-cluster controller (deploy/) and CI previews use it.
#   docker build -t modelops-agent .
#   docker run --rm -v "$PWD/examples/model-repo:/repo:ro" modelops-agent validate /repo
# The Deployment in deploy/ runs it as `agent run ...` (uid 65532, read-only root filesystem,
# HOME, the cache and the audit log on emptyDir volumes). Kubernetes probes /healthz and /readyz,
# so the image has no HEALTHCHECK.

# --- build: wheels of the agent and of every dependency ------------------------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# Exactly what the wheel is built from (pyproject's readme, the package, the JSON schemas that
# install as data files under <prefix>/share/modelops-agent/schemas).
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY schemas ./schemas
RUN pip wheel --wheel-dir /wheels .

# --- runtime ---------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm
# git for fetching the model repo (GitPython calls it), openssh-client for ssh:// remotes,
# ca-certificates for https:// ones.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 agent \
    && useradd --uid 65532 --gid 65532 --home-dir /home/agent --create-home --shell /usr/sbin/nologin agent
# Only the wheels built above (--no-index: nothing is fetched at this stage); pip compiles the
# bytecode now, so a read-only root filesystem costs nothing at start-up.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --disable-pip-version-check /wheels/*.whl \
    && agent --help > /dev/null
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/agent
USER 65532:65532
WORKDIR /home/agent
EXPOSE 8080
ENTRYPOINT ["agent"]
CMD ["run"]
