# syntax=docker/dockerfile:1
# The sender image: `outbound api` (default), `outbound worker` (started by the operator, one
# Deployment per ChannelProvider) and `outbound migrate` (the chart's hook Job).
#
#   make images                      # both images, tagged with the project version
#   docker build -f images/sender.Dockerfile -t outbound-sender:dev .
#
# Dependencies come only from images/requirements.lock (exact versions, hashes, wheels only), so
# a rebuild installs the same bytes; `make lock` refreshes the lock from pyproject.toml.
# Any image with Python 3.11 and python3-venv: Docker Hub's slim image by default; `make images`
# passes a Debian bookworm base made on the build machine (hack/images.sh), which needs no registry.
# `python3`, not `python`: Debian's own Python has no `python` command.
ARG PYTHON_IMAGE=python:3.11-slim-trixie

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY images/requirements.lock ./
RUN python3 -m venv /opt/outbound \
 && /opt/outbound/bin/pip install --require-hashes --only-binary=:all: --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY sender ./sender
COPY operator ./operator
# The project itself: no dependency resolution and no download (setuptools comes from the lock).
RUN /opt/outbound/bin/pip install --no-deps --no-build-isolation --no-index . \
 && /opt/outbound/bin/python -m compileall -q /opt/outbound/lib

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="outbound-sender" \
      org.opencontainers.image.description="Outbound messaging sender: HTTP API, worker, migrations" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 outbound \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin outbound
COPY --from=build /opt/outbound /opt/outbound
# Read-only root filesystem: no bytecode writes, state (if any) under the /tmp emptyDir.
ENV PATH=/opt/outbound/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OUTBOUND_STATE_DIR=/tmp/outbound \
    OUTBOUND_HTTP_PORT=8080
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["outbound"]
CMD ["api"]
