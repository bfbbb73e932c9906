#!/usr/bin/env bash
# What the browser demo's tests (tests/test_web_demo.py) need, installed only where missing; quiet on success.
#   - Debian chromium (headless browser driven by playwright-core), and a small CJK font so screenshots of
#     Chinese headlines are legible (fonts-wqy-microhei, 1.6 MB)
#   - the page's npm packages (onnxruntime-web, playwright-core) from android-demo/web/package-lock.json
# Needs root (or sudo) for apt-get, and Node.js with npm.
set -euo pipefail
web="$(cd "$(dirname "$0")/../web" && pwd)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

run() {  # run quietly; show the output only if the command fails
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-browser.sh: failed: $*" >&2
    exit 1
  fi
}

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

packages=()
[ -x /usr/bin/chromium ] || packages+=(chromium)
dpkg-query -W -f='${Status}' fonts-wqy-microhei 2>/dev/null | grep -q "ok installed" || packages+=(fonts-wqy-microhei)
if [ "${#packages[@]}" -gt 0 ]; then
  run sudo_if_needed apt-get update
  run sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
fi

if ! command -v npm >/dev/null; then
  echo "install-browser.sh: npm is missing; install Node.js 18+ with npm (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
if [ ! -d "$web/node_modules/onnxruntime-web" ] || [ ! -d "$web/node_modules/playwright-core" ]; then
  (cd "$web" && run npm ci --no-audit --no-fund)
fi
