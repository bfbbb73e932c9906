#!/usr/bin/env bash
# Everything the tests of android-demo/ need beyond Python, installed from Debian and npm (idempotent, quiet on
# success): a JDK and Android's org.json for the JVM tokenizer tests (tests/test_device_tokenizers.py), the
# Android build tools for the APK test (install-android-tools.sh), Chromium and the web demo's npm packages for
# the browser test (install-browser.sh), compilers, qemu and the aarch64 ExecuTorch SDK for the native runner's
# tests (install-native-tools.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v javac >/dev/null || missing+=(default-jdk-headless)
[ -f /usr/share/java/com.android.json.jar ] || missing+=(libandroid-json-java)
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    log=$(mktemp)
    { as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
        >"$log" 2>&1 || { tail -5 "$log" >&2; echo "install-test-tools: apt-get install ${missing[*]} failed" >&2; exit 1; }
    rm -f "$log"
fi
"$here/install-android-tools.sh"
"$here/install-browser.sh"
"$here/install-native-tools.sh"
