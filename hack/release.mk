# Container images, their dependency lock and the Helm chart (included by the top-level Makefile).
# How they fit together: docs/install.md and docs/images.md.

CONTAINER_ENGINE ?= docker
IMAGE_REGISTRY ?= ghcr.io/outbound-messaging
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
HELM_BIN = $(shell hack/kube-tools.sh paths 2>/dev/null | sed -n 's/^HELM=//p')

.PHONY: lock
lock: $(STAMP) ## Re-lock the images' dependencies (images/requirements.lock, hashes) from pyproject.toml
	$(VENV)/bin/uv pip compile pyproject.toml images/build.in --universal --python-version 3.11 \
	  --generate-hashes --annotation-style line --custom-compile-command "make lock" \
	  --output-file images/requirements.lock

.PHONY: images
images: ## Build the sender and operator images (needs a container engine: CONTAINER_ENGINE=docker|podman)
	@if ! $(CONTAINER_ENGINE) info >/dev/null 2>&1; then \
	  echo "images: '$(CONTAINER_ENGINE) info' failed: no container engine answers on this machine."; \
	  echo "  Start a Docker daemon (or set CONTAINER_ENGINE=podman) and run 'make images' again;"; \
	  echo "  the Dockerfiles are images/sender.Dockerfile and images/operator.Dockerfile (context: this folder)."; \
	  exit 1; fi
	$(CONTAINER_ENGINE) build -f images/sender.Dockerfile -t $(IMAGE_REGISTRY)/outbound-sender:$(IMAGE_TAG) .
	$(CONTAINER_ENGINE) build -f images/operator.Dockerfile -t $(IMAGE_REGISTRY)/outbound-operator:$(IMAGE_TAG) .

.PHONY: chart-sync
chart-sync: $(STAMP) ## Refresh the chart's copies (CRDs, monitoring, operator RBAC), value schemas, docs/helm-values.md
	$(PY) hack/chart_sync.py

.PHONY: chart-lint
chart-lint: $(STAMP) kube-tools ## helm lint --strict the chart and hadolint the Dockerfiles
	$(HELM_BIN) lint --strict charts/outbound-messaging --kube-version $$(sed -n 's/^KUBERNETES_VERSION=//p' hack/kube-tools.env)
	$(VENV)/bin/hadolint images/sender.Dockerfile images/operator.Dockerfile
