# Source this to keep ALL podman state in one folder: `. images/podman-env.sh DIR`.
# Writes DIR/containers.conf and DIR/storage.conf from the templates beside this file and exports
# CONTAINERS_CONF / CONTAINERS_STORAGE_CONF; images, layers and runtime files live under DIR.
# Remove it afterwards with `podman system reset --force` (with these variables still set), then rm -rf.
meshecho_podman_state() {
  local state here
  state=$(mkdir -p "$1" && cd "$1" && pwd)
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  cp "$here/podman/containers.conf" "$state/containers.conf"
  sed "s#@STATE@#$state#g" "$here/podman/storage.conf.in" >"$state/storage.conf"
  export CONTAINERS_CONF="$state/containers.conf"
  export CONTAINERS_STORAGE_CONF="$state/storage.conf"
}
meshecho_podman_state "$1"
