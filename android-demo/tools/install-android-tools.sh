#!/usr/bin/env bash
# Installs what android-demo/build_apk.sh needs to build a signed debug APK without Gradle. Idempotent, quiet
# on success, prints one line per failure.
#
#   * Debian bookworm packages (system apt): aapt (provides aapt2), zipalign, apksigner, android-framework-res
#   * dx and android.jar (API 23): bullseye packages dalvik-exchange and libandroid-23-java, fetched with
#     `apt-get download` through a PRIVATE apt configuration (its own sources.list, state and cache in a temp
#     dir; the system's sources are not touched) and unpacked with dpkg-deb -x into the tools dir
#   * the ExecuTorch Java API (classes.jar) from the npm package react-native-executorch (pinned), to type-check
#     the app against the real org.pytorch.executorch classes
#
# Tools dir: $MOBCLF_ANDROID_TOOLS, default ~/.cache/mobclf/android-tools (outside the repository).
set -euo pipefail

TOOLS="${MOBCLF_ANDROID_TOOLS:-$HOME/.cache/mobclf/android-tools}"
RNE_VERSION="0.7.3"                      # react-native-executorch, pinned
BULLSEYE_PACKAGES=(dalvik-exchange libandroid-23-java)
SYSTEM_PACKAGES=(aapt zipalign apksigner android-framework-res zip)

die() { echo "install-android-tools: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. bookworm packages
missing=()
for p in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    log=$(mktemp)
    if ! as_root apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" \
            >"$log" 2>&1; then
        as_root apt-get update -qq -o DPkg::Lock::Timeout=600 >>"$log" 2>&1 || true
        as_root apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" \
            >>"$log" 2>&1 || { tail -5 "$log" >&2; die "apt-get install ${missing[*]} failed"; }
    fi
    rm -f "$log"
fi
for tool in aapt2 zipalign apksigner; do command -v "$tool" >/dev/null || die "$tool missing after install"; done
for tool in javac java keytool; do
    command -v "$tool" >/dev/null || die "$tool not found: install a JDK (apt-get install default-jdk-headless)"
done

mkdir -p "$TOOLS"

# 2. dx + android.jar from bullseye, through a private apt dir
if [ ! -f "$TOOLS/debian/usr/share/java/com.android.dx-10.0.0.jar" ] \
        || [ ! -f "$TOOLS/debian/usr/share/java/com.android.android-23.jar" ]; then
    apt_dir=$(mktemp -d)
    trap 'rm -rf "$apt_dir"' EXIT
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/etc/sources.list.d" \
        "$apt_dir/etc/preferences.d" "$apt_dir/debs"
    echo "deb http://deb.debian.org/debian bullseye main" >"$apt_dir/etc/sources.list"
    touch "$apt_dir/status"
    apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/etc/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/etc/sources.list.d"
              -o "Dir::Etc::Preferences=$apt_dir/etc/preferences"
              -o "Dir::Etc::PreferencesParts=$apt_dir/etc/preferences.d"
              -o "Dir::State=$apt_dir" -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::State::status=$apt_dir/status"
              -o "Dir::Cache=$apt_dir/cache" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root"
              -o "APT::Get::List-Cleanup=0")
    apt-get "${apt_opts[@]}" update -qq >"$apt_dir/log" 2>&1 \
        || { tail -5 "$apt_dir/log" >&2; die "apt-get update of the private bullseye source failed"; }
    (cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" download "${BULLSEYE_PACKAGES[@]}" >>"$apt_dir/log" 2>&1) \
        || { tail -5 "$apt_dir/log" >&2; die "apt-get download ${BULLSEYE_PACKAGES[*]} (bullseye) failed"; }
    rm -rf "$TOOLS/debian.new" && mkdir -p "$TOOLS/debian.new"
    for deb in "$apt_dir"/debs/*.deb; do dpkg-deb -x "$deb" "$TOOLS/debian.new"; done
    rm -rf "$TOOLS/debian" && mv "$TOOLS/debian.new" "$TOOLS/debian"
    rm -rf "$apt_dir"
    trap - EXIT
fi
[ -f "$TOOLS/debian/usr/share/java/com.android.dx-10.0.0.jar" ] || die "dx jar missing in $TOOLS/debian"
[ -f "$TOOLS/debian/usr/share/java/com.android.android-23.jar" ] || die "android-23 jar missing in $TOOLS/debian"

# 3. ExecuTorch Java API classes from npm react-native-executorch
if [ ! -f "$TOOLS/react-native-executorch-$RNE_VERSION/android/libs/classes.jar" ]; then
    command -v npm >/dev/null || die "npm not found (needed for react-native-executorch@$RNE_VERSION)"
    npm_dir=$(mktemp -d)
    (cd "$npm_dir" && npm pack --silent "react-native-executorch@$RNE_VERSION" >"$npm_dir/log" 2>&1) \
        || { tail -5 "$npm_dir/log" >&2; die "npm pack react-native-executorch@$RNE_VERSION failed"; }
    mkdir -p "$npm_dir/x"
    tar -xzf "$npm_dir/react-native-executorch-$RNE_VERSION.tgz" -C "$npm_dir/x" package/android/libs/classes.jar \
        package/package.json package/LICENSE 2>/dev/null \
        || tar -xzf "$npm_dir/react-native-executorch-$RNE_VERSION.tgz" -C "$npm_dir/x" package/android/libs/classes.jar
    rm -rf "$TOOLS/react-native-executorch-$RNE_VERSION"
    mv "$npm_dir/x/package" "$TOOLS/react-native-executorch-$RNE_VERSION"
    rm -rf "$npm_dir"
fi
[ -f "$TOOLS/react-native-executorch-$RNE_VERSION/android/libs/classes.jar" ] || die "ExecuTorch classes.jar missing"

# a small env file build_apk.sh reads
cat >"$TOOLS/env.sh" <<EOF
ANDROID_JAR="$TOOLS/debian/usr/share/java/com.android.android-23.jar"
DX_JAR="$TOOLS/debian/usr/share/java/com.android.dx-10.0.0.jar"
EXECUTORCH_JAR="$TOOLS/react-native-executorch-$RNE_VERSION/android/libs/classes.jar"
EOF
