# Container images, their dependency lock and the Helm chart (included by the top-level Makefile).
# How they fit together: docs/install.md (Images); the build itself: hack/images.sh.

# podman (installed by `make images-deps` on Debian, run with hack/containers.conf) or docker.
CONTAINER_ENGINE ?= podman
# local: a Debian bookworm base made here with mmdebstrap (no registry needed; what `make test` uses).
# Or any python:3.11 image, e.g. IMAGE_BASE=python:3.11-slim-trixie (the Dockerfiles' own default).
IMAGE_BASE ?= local
IMAGE_REGISTRY ?= ghcr.io/outbound-messaging
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGES_ENV = CONTAINER_ENGINE=$(CONTAINER_ENGINE) IMAGE_BASE=$(IMAGE_BASE) IMAGE_REGISTRY=$(IMAGE_REGISTRY) IMAGE_TAG=$(IMAGE_TAG)
HELM_BIN = $(shell hack/kube-tools.sh paths 2>/dev/null | sed -n 's/^HELM=//p')

.PHONY: lock
lock: $(STAMP) ## Re-lock the images' dependencies (images/requirements.lock, hashes) from pyproject.toml
	$(VENV)/bin/uv pip compile pyproject.toml images/build.in --extra tracing --universal --python-version 3.11 \
	  --generate-hashes --annotation-style line --custom-compile-command "make lock" \
	  --output-file images/requirements.lock

.PHONY: images-deps
images-deps: ## apt-get install what building and running the images needs (podman, runc, mmdebstrap, containerd, CNI, docker-registry) if missing
	@$(IMAGES_ENV) hack/images.sh deps

.PHONY: images
images: ## Build the sender and operator images, tagged with the project version (skipped when the sources did not change)
	@$(IMAGES_ENV) hack/images.sh build
	@echo "tagged $(IMAGE_REGISTRY)/outbound-sender:$(IMAGE_TAG) and $(IMAGE_REGISTRY)/outbound-operator:$(IMAGE_TAG)"

.PHONY: pause-image
pause-image: ## Build the test node's sandbox image (hack/pause: Go, FROM scratch) if missing
	@$(IMAGES_ENV) hack/images.sh pause

# tests/images, tests/kube/operator/test_image.py and tests/kube/nodes run the images of the current
# sources; the node's pods need the pause image.
TEST_PREREQS += images pause-image

.PHONY: chart-sync
chart-sync: $(STAMP) ## Refresh the chart's copies (CRDs, monitoring, operator RBAC), value schemas, docs/helm-values.md, chart README
	$(PY) hack/chart_sync.py
	$(PY) hack/chart_readme.py

.PHONY: chart-lint
chart-lint: $(STAMP) kube-tools ## helm lint --strict the chart and hadolint the Dockerfiles
	$(HELM_BIN) lint --strict charts/outbound-messaging --kube-version $$(sed -n 's/^KUBERNETES_VERSION=//p' hack/kube-tools.env)
	$(VENV)/bin/hadolint images/sender.Dockerfile images/operator.Dockerfile
