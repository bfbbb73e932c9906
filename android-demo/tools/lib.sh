# Shared by the install scripts here (sourced, not run): quiet commands, root for apt-get, Debian packages.
# The sourcing script sets $tag (its name, for messages).

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

quietly() {  # run a command quietly; show its output only if it fails, then stop
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "$tag: failed: $*" >&2
    exit 1
  fi
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {  # install the Debian packages named, if any
  if [ "$#" -gt 0 ]; then
    quietly as_root apt-get update
    quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
  fi
}
