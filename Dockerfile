# The agent as a container image (the in-cluster controller and CI previews use it).
# Build: docker build -t modelops-agent .   Run: docker run --rm -v $PWD:/repo modelops-agent validate /repo
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY schemas ./schemas
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 65532 --create-home agent
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 65532
WORKDIR /home/agent
ENTRYPOINT ["agent"]
CMD ["--help"]
