# syntax=docker/dockerfile:1
# The operator image: `outbound-operator` (kopf), watching ChannelProviders and QuotaPolicies.
#
#   make images
#   docker build -f images/operator.Dockerfile -t outbound-operator:dev .
#
# Same dependency lock as the sender (one Python project): images/requirements.lock.
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
RUN /opt/outbound/bin/pip install --no-deps --no-build-isolation --no-index . \
 && /opt/outbound/bin/python -m compileall -q /opt/outbound/lib

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="outbound-operator" \
      org.opencontainers.image.description="Outbound messaging operator: ChannelProvider and QuotaPolicy controller" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 outbound \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin outbound
COPY --from=build /opt/outbound /opt/outbound
ENV PATH=/opt/outbound/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
# /metrics and kopf's /healthz (OUTBOUND_OPERATOR_METRICS_PORT, OUTBOUND_OPERATOR_HEALTH_PORT).
EXPOSE 9090 8081
ENTRYPOINT ["outbound-operator"]
