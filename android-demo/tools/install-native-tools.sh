#!/usr/bin/env bash
# What the native ExecuTorch runner (toolkit/mobclf/native) needs, installed only where missing; quiet on success.
#   - Debian g++ (builds the runner against the C++ SDK inside the installed executorch wheel)
#   - Debian g++-aarch64-linux-gnu and qemu-user (the same runner cross-built for ARM and run under emulation)
#   - the aarch64 executorch wheel of the installed version (PyPI), its include/ and lib/ unpacked into the
#     environment, at PREFIX/share/mobclf/executorch-VERSION-aarch64/ (where mobclf.native looks for it)
# Needs root (or sudo) for apt-get, and the project's virtual environment (.venv) or PYTHON naming its python.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
tag=install-native-tools.sh
source "$(dirname "$0")/lib.sh"
download="$(mktemp -d)"
trap 'rm -rf "$log" "$download"' EXIT

packages=()
command -v g++ >/dev/null || packages+=(g++)
command -v aarch64-linux-gnu-g++ >/dev/null || packages+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || packages+=(qemu-user)
apt_install "${packages[@]}"

version="$("$python" -c 'import importlib.metadata as m; print(m.version("executorch"))')"
abi="$("$python" -c 'import sys; print(f"{sys.version_info.major}{sys.version_info.minor}")')"
prefix="$("$python" -c 'import sys; print(sys.prefix)')"
sdk="$prefix/share/mobclf/executorch-$version-aarch64"
if [ ! -f "$sdk/executorch/lib/libexecutorch.so" ]; then
  quietly "$python" -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_aarch64 \
      --python-version "$abi" "executorch==$version" -d "$download"
  rm -rf "$sdk.partial" && mkdir -p "$sdk.partial"
  quietly "$python" -m zipfile -e "$download"/executorch-*.whl "$download/wheel"
  cp -r "$download/wheel/executorch/include" "$download/wheel/executorch/lib" "$sdk.partial/"
  rm -rf "$sdk" && mkdir -p "$sdk" && mv "$sdk.partial" "$sdk/executorch"
fi
