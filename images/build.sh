#!/usr/bin/env bash
# `make images`: build meshecho/echo:<version> and meshecho/netdebug:<version> with whatever engine
# is here (a working docker, else podman). Usage: bash images/build.sh [echo] [netdebug]
#
# Environment:
#   PYTHON_IMAGE           base image (default python:3.12-slim-bookworm; images/localbase.sh makes
#                          one without a registry)
#   ENGINE                 docker | podman (default: docker when `docker info` answers, else podman)
#   IMAGE_PREFIX           repository prefix (default meshecho)
#   BUILD_CA_BUNDLE        podman only: a CA bundle file mounted read-only for pip during the build,
#                          where outbound TLS is re-signed by a local CA; never copied into the image
#   MESHECHO_PODMAN_STATE  podman only: keep all podman state (config, storage, runtime) in this folder
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cd "$repo"

die() { echo "images/build.sh: $*" >&2; exit 2; }

version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' pyproject.toml | head -n 1)
[[ -n $version ]] || die "no version in pyproject.toml"
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
prefix=${IMAGE_PREFIX:-meshecho}
base=${PYTHON_IMAGE:-python:3.12-slim-bookworm}

engine=${ENGINE:-}
if [[ -z $engine ]]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    engine=docker
  elif command -v podman >/dev/null 2>&1; then
    engine=podman
  else
    die "neither a working docker (docker info failed or docker is missing) nor podman found"
  fi
fi

args=(build --build-arg "PYTHON_IMAGE=$base" --build-arg "VERSION=$version" --build-arg "REVISION=$revision")
case $engine in
  podman)
    if [[ -n ${MESHECHO_PODMAN_STATE:-} ]]; then
      # shellcheck source=images/podman-env.sh
      . "$here/podman-env.sh" "$MESHECHO_PODMAN_STATE"
    fi
    # docker format: the OCI image format has no HEALTHCHECK, podman would drop it.
    # Host network: podman's default bridge network changes iptables and ip_forward on the host.
    args+=(--format docker --network=host)
    if [[ -n ${BUILD_CA_BUNDLE:-} ]]; then
      [[ -r $BUILD_CA_BUNDLE ]] || die "BUILD_CA_BUNDLE=$BUILD_CA_BUNDLE is not a readable file"
      args+=(-v "$BUILD_CA_BUNDLE:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
    fi
    ;;
  docker)
    [[ -z ${BUILD_CA_BUNDLE:-} ]] || die "BUILD_CA_BUNDLE needs podman (docker build cannot mount files)"
    ;;
  *) die "ENGINE must be docker or podman, not '$engine'" ;;
esac

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(echo netdebug)
for name in "${targets[@]}"; do
  [[ $name == echo || $name == netdebug ]] || die "unknown image '$name' (echo, netdebug)"
  tag="$prefix/$name:$version"
  echo "== $engine build $tag (base $base)" >&2
  "$engine" "${args[@]}" -f "Dockerfile.$name" -t "$tag" .
done
