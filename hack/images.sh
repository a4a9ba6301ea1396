#!/usr/bin/env bash
# Builds the sender and operator images (images/*.Dockerfile) and what building them needs.
#
# Usage: hack/images.sh [deps|base|build|paths]
#   deps   apt-get install the Debian packages that are missing: podman and runc (engine and runtime),
#          mmdebstrap (the local base image), containerd and containernetworking-plugins (the test
#          plane's node, tests/kube/node.py), docker-registry (the node's private registry,
#          tests/kube/registry.py). Installs nothing when CONTAINER_ENGINE=docker.
#   base   make the local base image (IMAGE_BASE=local) if it is not there; prints BASE_IMAGE=<ref>
#   build  (default) build both images unless images of the very same inputs exist; prints KEY=value
#   pause  build the test node's sandbox image (hack/pause) unless it exists; prints PAUSE_IMAGE=<ref>
#   paths  print the KEY=value lines of the current inputs (SENDER_IMAGE, OPERATOR_IMAGE, ...),
#          building nothing; IMAGES_BUILT=yes|no says whether both exist
#
# Base image (IMAGE_BASE):
#   local (default)  a Debian bookworm root filesystem made here with mmdebstrap (python3 3.11,
#                    python3-venv, ca-certificates), imported as localhost/outbound-base:<key>. No
#                    registry is needed. The CA certificates this machine added itself
#                    (/usr/local/share/ca-certificates, e.g. a TLS-inspecting proxy's) are trusted in it,
#                    so pip can reach PyPI from the build.
#   <image ref>      any python:3.11 image, e.g. python:3.11-slim-trixie (the Dockerfiles' default).
#
# Caching, outside the checkout (OUTBOUND_IMAGES_DIR, default ~/.cache/outbound-messaging/images):
#   base-<key>.tar is the base root filesystem; <key> hashes the suite, the package list and the added
#   CA certificates. The built images are tagged localhost/outbound-{sender,operator}:src-<key>, where
#   <key> hashes every file of the build context that the Dockerfiles copy, the Dockerfile and the base
#   image's ID; a build whose tag exists is skipped, so a warm run costs a few hundred milliseconds.
#   Both images are also tagged $IMAGE_REGISTRY/outbound-{sender,operator}:$IMAGE_TAG.
#
# Podman runs with hack/containers.conf (CONTAINERS_CONF): the runc runtime and no default ulimits.
# Environment: CONTAINER_ENGINE (podman|docker, default podman), IMAGE_BASE, IMAGE_REGISTRY,
#   IMAGE_TAG (default: the version in pyproject.toml), OUTBOUND_IMAGES_DIR, BASE_SUITE (bookworm).
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HACK_DIR/.." && pwd)"
ENGINE="${CONTAINER_ENGINE:-podman}"
IMAGE_BASE="${IMAGE_BASE:-local}"
IMAGE_REGISTRY="${IMAGE_REGISTRY:-ghcr.io/outbound-messaging}"
IMAGE_TAG="${IMAGE_TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml")}"
IMAGES_DIR="${OUTBOUND_IMAGES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/outbound-messaging/images}"
BASE_SUITE="${BASE_SUITE:-bookworm}"
BASE_PACKAGES="python3,python3-venv,ca-certificates,passwd"
LOCAL_CA_DIR=/usr/local/share/ca-certificates
# Podman's root defaults raise RLIMIT_NOFILE/NPROC (refused on some hosts) and prefer crun.
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HACK_DIR/containers.conf}"

log() { echo "images: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
engine() { "$ENGINE" "$@"; }
image_exists() { engine image inspect "$1" >/dev/null 2>&1; }
short_hash() { sha256sum | cut -c1-16; }

deps() {
  [[ "$ENGINE" == podman ]] || { command -v "$ENGINE" >/dev/null || die "$ENGINE is not installed"; return 0; }
  local missing=() command package
  # containerd and the CNI plugins run the test plane's node (tests/kube/node.py); docker-registry
  # serves it images that need a login (tests/kube/registry.py).
  for pair in podman:podman runc:runc mmdebstrap:mmdebstrap containerd:containerd \
    /usr/lib/cni/bridge:containernetworking-plugins docker-registry:docker-registry; do
    command="${pair%%:*}" package="${pair#*:}"
    [[ "$command" == mmdebstrap && "$IMAGE_BASE" != local ]] && continue
    command -v "$command" >/dev/null || [[ -x "$command" ]] || missing+=("$package")
  done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null || die "missing: ${missing[*]}; install them with your package manager"
  [[ $(id -u) == 0 ]] || die "missing: ${missing[*]}; run 'sudo apt-get install ${missing[*]}' (or make images as root)"
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

local_cas() { find "$LOCAL_CA_DIR" -type f -name '*.crt' 2>/dev/null | sort; }

base_key() {
  {
    echo "$BASE_SUITE minbase $BASE_PACKAGES"
    local_cas | while read -r file; do echo "$file"; cat "$file"; done
  } | short_hash
}

base_ref() {
  if [[ "$IMAGE_BASE" == local ]]; then echo "localhost/outbound-base:$(base_key)"; else echo "$IMAGE_BASE"; fi
}

# base: the local Debian base; the tarball is kept so a wiped image store re-imports in seconds.
base() {
  local ref tarball
  ref="$(base_ref)"
  if [[ "$IMAGE_BASE" != local ]]; then
    image_exists "$ref" || engine pull "$ref" >&2
  fi
  if image_exists "$ref"; then echo "BASE_IMAGE=$ref"; return; fi
  tarball="$IMAGES_DIR/base-${ref##*:}.tar"
  if [[ ! -s "$tarball" ]]; then
    command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: hack/images.sh deps"
    mkdir -p "$IMAGES_DIR"
    log "making the $BASE_SUITE base with mmdebstrap ($BASE_PACKAGES)"
    local hooks=()
    if [[ -n "$(local_cas)" ]]; then
      hooks=(--customize-hook="copy-in $LOCAL_CA_DIR /usr/local/share"
        --customize-hook='chroot "$1" update-ca-certificates')
    fi
    mmdebstrap --quiet --format=tar --variant=minbase --include="$BASE_PACKAGES" "${hooks[@]}" \
      "$BASE_SUITE" "$tarball.partial" || { rm -f "$tarball.partial"; die "mmdebstrap failed"; }
    mv "$tarball.partial" "$tarball"
  fi
  engine import "$tarball" "$ref" >/dev/null
  echo "BASE_IMAGE=$ref"
}

# source_key NAME : hash of what the NAME image is built from (the files .dockerignore lets through).
source_key() {
  local name="$1" base_id
  base_id="$(engine image inspect --format '{{.Id}}' "$(base_ref)" 2>/dev/null || echo missing)"
  {
    echo "$base_id"
    cd "$ROOT"
    find pyproject.toml README.md images/requirements.lock "images/$name.Dockerfile" sender operator \
      -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 \
      | sort -z | xargs -0 sha256sum
  } | short_hash
}

paths() {
  local name upper built=yes
  echo "CONTAINER_ENGINE=$ENGINE"
  echo "CONTAINERS_CONF=$CONTAINERS_CONF"
  echo "BASE_IMAGE=$(base_ref)"
  for name in sender operator; do
    upper="$(tr '[:lower:]' '[:upper:]' <<<"$name")"
    echo "${upper}_IMAGE=localhost/outbound-$name:src-$(source_key "$name")"
    image_exists "localhost/outbound-$name:src-$(source_key "$name")" || built=no
  done
  echo "IMAGES_BUILT=$built"
}

# forget_older NAME REF : untag the images of earlier sources, so their layers do not pile up, but
# keep the OUTBOUND_IMAGES_KEEP (default 4) newest: two checkouts of the project on one machine (git
# worktrees, a CI runner with two branches) each need their own, and removing every other one made a
# test run lose its images in the middle when the other checkout built.
forget_older() {
  local old keep="${OUTBOUND_IMAGES_KEEP:-4}" seen=0
  [[ "$keep" =~ ^[1-9][0-9]*$ ]] || die "OUTBOUND_IMAGES_KEEP must be a positive integer, not '$keep'"
  while read -r _ old; do
    [[ "$old" == *:src-* && "$old" != "$2" ]] || continue
    seen=$((seen + 1))
    ((seen >= keep)) || continue  # the current one counts as kept too
    engine rmi "$old" >/dev/null 2>&1 || log "could not remove $old (in use?)"
  done < <(engine images --format '{{.CreatedAt}}|{{.Repository}}:{{.Tag}}' --filter "reference=localhost/outbound-$1" \
           | sort -r | tr '|' ' ' | awk '{print $1, $NF}')
}

build() {
  local name ref base_image
  deps
  base_image="$(base | sed -n 's/^BASE_IMAGE=//p')"
  for name in sender operator; do
    ref="localhost/outbound-$name:src-$(source_key "$name")"
    if image_exists "$ref"; then
      log "$ref is up to date"
    else
      log "building $ref on $base_image"
      # Host networking: the build reaches PyPI the way this machine does.
      engine build --network=host --build-arg "PYTHON_IMAGE=$base_image" \
        -f "$ROOT/images/$name.Dockerfile" -t "$ref" "$ROOT" >&2
    fi
    engine tag "$ref" "$IMAGE_REGISTRY/outbound-$name:$IMAGE_TAG"
    forget_older "$name" "$ref"
  done
  paths
}

# pause: the test node's sandbox image (hack/pause), a static Go binary FROM scratch; prints PAUSE_IMAGE=<ref>
pause() {
  local ref context
  command -v go >/dev/null || die "the go command is needed to build the pause image (it builds kube-tools too)"
  ref="localhost/outbound-pause:$({ go version; cat "$HACK_DIR/pause/main.go" "$HACK_DIR/pause/Dockerfile"; } | short_hash)"
  if ! image_exists "$ref"; then
    context="$(mktemp -d)"
    (cd "$HACK_DIR/pause" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags '-s -w' -o "$context/pause" .)
    engine build -f "$HACK_DIR/pause/Dockerfile" -t "$ref" "$context" >&2
    rm -rf "$context"
  fi
  echo "PAUSE_IMAGE=$ref"
}

case "${1:-build}" in
  deps) deps ;;
  pause) deps && pause ;;
  base) deps && base ;;
  build) build ;;
  paths) paths ;;
  *) die "usage: hack/images.sh [deps|base|build|paths|pause]" ;;
esac
