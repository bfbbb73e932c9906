#!/usr/bin/env bash
# What the browser demo's tests (tests/test_web_demo.py) need, installed only where missing; quiet on success.
#   - Debian chromium (headless browser driven by playwright-core), and a small CJK font so screenshots of
#     Chinese headlines are legible (fonts-wqy-microhei, 1.6 MB)
#   - the page's npm packages (onnxruntime-web, playwright-core) from android-demo/web/package-lock.json
# Needs root (or sudo) for apt-get, and Node.js with npm.
set -euo pipefail
web="$(cd "$(dirname "$0")/../web" && pwd)"
tag=install-browser.sh
source "$(dirname "$0")/lib.sh"

packages=()
[ -x /usr/bin/chromium ] || packages+=(chromium)
dpkg-query -W -f='${Status}' fonts-wqy-microhei 2>/dev/null | grep -q "ok installed" || packages+=(fonts-wqy-microhei)
apt_install "${packages[@]}"

if ! command -v npm >/dev/null; then
  echo "install-browser.sh: npm is missing; install Node.js 18+ with npm (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
if [ ! -d "$web/node_modules/onnxruntime-web" ] || [ ! -d "$web/node_modules/playwright-core" ]; then
  (cd "$web" && quietly npm ci --no-audit --no-fund)
fi
