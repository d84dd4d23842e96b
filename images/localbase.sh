#!/usr/bin/env bash
# Build a Python base image without any image registry: debootstrap a minimal Debian bookworm with
# Debian's python3 + python3-venv and import it into podman. Use it as the PYTHON_IMAGE build argument:
#
#   MESHECHO_PODMAN_STATE=/tmp/pm bash images/localbase.sh            # -> localhost/meshecho-pybase:bookworm
#   MESHECHO_PODMAN_STATE=/tmp/pm PYTHON_IMAGE=localhost/meshecho-pybase:bookworm make images
#
# Needs root, debootstrap and podman. The Debian mirror is the one apt on this machine already uses.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tag=${1:-localhost/meshecho-pybase:bookworm}
suite=${DEBIAN_SUITE:-bookworm}

if [[ -n ${MESHECHO_PODMAN_STATE:-} ]]; then
  # shellcheck source=images/podman-env.sh
  . "$here/podman-env.sh" "$MESHECHO_PODMAN_STATE"
fi

mirror=${DEBIAN_MIRROR:-}
if [[ -z $mirror ]]; then
  # The first URIs (deb822) or deb line of this machine's apt sources: whatever mirror apt already reaches.
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [[ -n $mirror ]] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
[[ -n $mirror ]] || { echo "localbase: no Debian mirror found in /etc/apt; set DEBIAN_MIRROR" >&2; exit 2; }

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/meshecho-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
echo "localbase: debootstrap --variant=minbase $suite from $mirror" >&2
debootstrap --variant=minbase --include=python3,python3-venv "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
  || { tail -20 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"
# What a registry base image would not carry: the package cache, the index lists (RUN steps do their own
# apt-get update) and this machine's resolver and host name.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
rm -f "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname"
tar -C "$rootfs" --numeric-owner -c . | podman import --quiet --change 'CMD ["python3"]' - "$tag" >/dev/null
echo "localbase: $tag" >&2
