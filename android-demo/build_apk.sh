#!/usr/bin/env bash
# Build a signed debug APK of the demo app WITHOUT Gradle, with the given bundles in assets/bundles/NAME/.
#
#   android-demo/build_apk.sh BUNDLE_DIR... [--out APK]
#   android-demo/build_apk.sh textcnn=runs/bundle-a tinybert=runs/bundle-b --out demo.apk
#
# A bundle is a directory written by `mobclf export --target android` (bundle.json, model.pte, tokenizer/, ...), or
# a cascade written by `mobclf cascade` of such bundles (cascade.json, fast/, accurate/); its name in the app is the
# directory's basename, or NAME in NAME=DIR. Bundles already in app/src/main/assets/bundles/ are packaged too. Default output: android-demo/build/mobclf-demo-debug.apk.
#
# Steps: aapt2 compile + link (resources and manifest, against the Debian framework-res), javac -source/-target 8
# (the app and org.mobclf.core against android.jar API 23 and the real ExecuTorch Java API), dx to classes.dex,
# zip, zipalign, apksigner with a debug key made by keytool (kept in the tools dir, never in the repository),
# apksigner verify. Tools: android-demo/tools/install-android-tools.sh.
#
# What such an APK lacks: the ExecuTorch native library (libexecutorch.so) and the fbjni/soloader Java classes
# (Maven-only), so it installs and tokenizes but cannot run the model. Use Gradle (README.md) for a working app.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS="${MOBCLF_ANDROID_TOOLS:-$HOME/.cache/mobclf/android-tools}"
APP="$HERE/app"
PACKAGE="org.mobclf.demo"
FRAMEWORK_RES="/usr/share/android-framework-res/framework-res.apk"
INSTALL_HINT="run android-demo/tools/install-android-tools.sh"

die() { echo "build_apk.sh: $*" >&2; exit 1; }

usage="usage: build_apk.sh BUNDLE_DIR... [--out APK]   (BUNDLE_DIR or NAME=BUNDLE_DIR; a bundle or a cascade)"
out="$HERE/build/mobclf-demo-debug.apk"
names=()
dirs=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) [ $# -ge 2 ] || die "--out needs a path; $usage"; out="$2"; shift 2 ;;
        --out=*) out="${1#--out=}"; shift ;;
        -h|--help) echo "$usage"; exit 0 ;;
        -*) die "unknown option $1; $usage" ;;
        *)
            if [[ "$1" == *=* ]]; then name="${1%%=*}"; dir="${1#*=}"; else dir="$1"; name="$(basename "$1")"; fi
            [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || die "bundle name '$name' may only use letters, digits, . _ -"
            [ -d "$dir" ] || die "bundle $dir: not a directory"
            if [ -f "$dir/cascade.json" ]; then  # its two bundles, each with its own program
                for part in fast accurate; do
                    [ -f "$dir/$part/model.pte" ] || die "cascade $dir: no $part/model.pte (make it of bundles exported with --target android or all)"
                done
            else
                [ -f "$dir/bundle.json" ] || die "bundle $dir: no bundle.json (export one with \`mobclf export --target android --out DIR\`, or make a cascade with \`mobclf cascade\`)"
                [ -f "$dir/model.pte" ] || die "bundle $dir: no model.pte (export with --target android or --target all)"
            fi
            for seen in "${names[@]+"${names[@]}"}"; do
                [ "$seen" != "$name" ] || die "two bundles named '$name'; name them with NAME=DIR"
            done
            names+=("$name"); dirs+=("$(cd "$dir" && pwd)"); shift ;;
    esac
done
[ ${#names[@]} -gt 0 ] || [ -n "$(ls -A "$APP/src/main/assets/bundles" 2>/dev/null | grep -v '^\.gitkeep$')" ] \
    || die "no bundle given and none in app/src/main/assets/bundles; $usage"

# tools
for tool in aapt2 zipalign apksigner javac java keytool zip; do
    command -v "$tool" >/dev/null || die "$tool not found; $INSTALL_HINT"
done
[ -f "$FRAMEWORK_RES" ] || die "$FRAMEWORK_RES not found (android-framework-res); $INSTALL_HINT"
[ -f "$TOOLS/env.sh" ] || die "no Android tools in $TOOLS; $INSTALL_HINT"
# shellcheck source=/dev/null
. "$TOOLS/env.sh"
for jar in "$ANDROID_JAR" "$DX_JAR" "$EXECUTORCH_JAR"; do
    [ -f "$jar" ] || die "$jar not found; $INSTALL_HINT"
done

# versions from app/build.gradle, so both builds agree
gradle_value() { sed -n "s/^ *$1 '\{0,1\}\([^' ]*\)'\{0,1\} *$/\1/p" "$APP/build.gradle" | head -1; }
min_sdk="$(gradle_value minSdk)"; version_code="$(gradle_value versionCode)"; version_name="$(gradle_value versionName)"
[ -n "$min_sdk" ] && [ -n "$version_code" ] && [ -n "$version_name" ] \
    || die "cannot read minSdk/versionCode/versionName from $APP/build.gradle"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log="$work/log"
run() {  # run a step quietly; on failure show its output and stop
    local what="$1"; shift
    "$@" >"$log" 2>&1 || { cat "$log" >&2; die "$what failed"; }
}

# 1. resources and manifest (the manifest's package comes from `namespace` in app/build.gradle under Gradle)
mkdir -p "$work/gen" "$work/classes" "$work/assets/bundles" "$work/dex"
sed "s|<manifest |<manifest package=\"$PACKAGE\" |" "$APP/src/main/AndroidManifest.xml" >"$work/AndroidManifest.xml"
run "aapt2 compile" aapt2 compile --dir "$APP/src/main/res" -o "$work/res.zip"
if [ -d "$APP/src/main/assets" ]; then
    cp -R "$APP/src/main/assets/." "$work/assets/"
    find "$work/assets" -name .gitkeep -delete
fi
for i in "${!names[@]}"; do
    rm -rf "$work/assets/bundles/${names[$i]}"
    cp -R "${dirs[$i]}" "$work/assets/bundles/${names[$i]}"
done
run "aapt2 link" aapt2 link -o "$work/base.apk" -I "$FRAMEWORK_RES" --manifest "$work/AndroidManifest.xml" \
    "$work/res.zip" --java "$work/gen" -A "$work/assets" -0 .pte \
    --min-sdk-version "$min_sdk" --target-sdk-version "$min_sdk" \
    --version-code "$version_code" --version-name "$version_name"

# 2. Java 8 classes: the app, org.mobclf.core and R, against android.jar (API 23) and the ExecuTorch Java API
find "$APP/src/main/java" "$work/gen" -name '*.java' >"$work/sources.txt"
run "javac" javac -nowarn -Xlint:-options -encoding UTF-8 -source 8 -target 8 -bootclasspath "$ANDROID_JAR" \
    -classpath "$EXECUTORCH_JAR" -d "$work/classes" @"$work/sources.txt"

# 3. dex: our classes plus the ExecuTorch Java classes (their fbjni/soloader dependencies are not available here)
run "dx" java -cp "$DX_JAR" com.android.dx.command.Main --dex --min-sdk-version="$min_sdk" \
    --output="$work/dex/classes.dex" "$work/classes" "$EXECUTORCH_JAR"

# 4. package, align, sign, verify
cp "$work/base.apk" "$work/unsigned.apk"
(cd "$work/dex" && run "zip classes.dex" zip -q -X "$work/unsigned.apk" classes.dex)
run "zipalign" zipalign -f -p 4 "$work/unsigned.apk" "$work/aligned.apk"
keystore="$TOOLS/debug.keystore"
if [ ! -f "$keystore" ]; then
    mkdir -p "$TOOLS"
    run "keytool" keytool -genkeypair -keystore "$keystore" -storepass android -keypass android \
        -alias androiddebugkey -keyalg RSA -keysize 2048 -validity 10000 -dname "CN=Android Debug,O=Android,C=US"
fi
mkdir -p "$(dirname "$out")"
run "apksigner sign" apksigner sign --ks "$keystore" --ks-pass pass:android --key-pass pass:android \
    --ks-key-alias androiddebugkey --out "$work/signed.apk" "$work/aligned.apk"
run "apksigner verify" apksigner verify "$work/signed.apk"
mv "$work/signed.apk" "$out"
bundles="$(cd "$work/assets/bundles" && ls -A | tr '\n' ' ')"
echo "build_apk.sh: wrote $out (bundles: ${bundles% })"
