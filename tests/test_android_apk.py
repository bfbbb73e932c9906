"""android-demo/build_apk.sh: a signed debug APK of the on-phone demo, built without Gradle, with two exported
bundles inside. Needs the Android tools from ``android-demo/tools/install-android-tools.sh`` (run by .ci/run);
without them the tests fail, they do not skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import run

ROOT = Path(__file__).resolve().parents[1]
BUILD_APK = ROOT / "android-demo" / "build_apk.sh"
INSTALL = "android-demo/tools/install-android-tools.sh"
TOOLS = Path(os.environ.get("MOBCLF_ANDROID_TOOLS", Path.home() / ".cache" / "mobclf" / "android-tools"))


def require_android_tools():
    missing = [tool for tool in ("aapt2", "zipalign", "apksigner", "javac", "java", "keytool", "zip")
               if shutil.which(tool) is None]
    if not (TOOLS / "env.sh").is_file():
        missing.append(f"{TOOLS}/env.sh (dx, android.jar, ExecuTorch classes.jar)")
    if missing:
        pytest.fail(f"Android build tools missing: {', '.join(missing)}; run {INSTALL}", pytrace=False)


def build_apk(*args, env=None):
    return subprocess.run(["bash", str(BUILD_APK), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.fixture(scope="module")
def android_bundles(students):
    """Android bundles (.pte only) of the two tiny students and a cascade of them: {name: directory}."""
    bundles = {}
    for name in ("textcnn", "tinybert"):
        out = students / "android-apk" / name
        result = run("export", "--from", students / name, "--target", "android", "--out", out,
                     "--parity-texts", "20")
        assert result.exit_code == 0, result.output
        assert (out / "model.pte").is_file() and (out / "bundle.json").is_file()
        bundles[name] = out
    result = run("cascade", "--fast", bundles["textcnn"], "--accurate", bundles["tinybert"], "--data",
                 students / "data", "--out", students / "android-apk" / "cascade", "--keep", "0.98")
    assert result.exit_code == 0, result.output
    bundles["cascade"] = students / "android-apk" / "cascade"
    return bundles


def test_build_apk_packages_both_bundles_into_a_signed_debug_apk(android_bundles, tmp_path):
    require_android_tools()
    apk = tmp_path / "demo.apk"
    result = build_apk(*(f"{name}={directory}" for name, directory in android_bundles.items()), "--out", apk)
    assert result.returncode == 0, result.stdout + result.stderr
    assert apk.is_file() and f"wrote {apk}" in result.stdout and "cascade textcnn tinybert" in result.stdout

    verify = subprocess.run(["apksigner", "verify", "--verbose", str(apk)], capture_output=True, text=True)
    assert verify.returncode == 0 and "Verified using v2 scheme (APK Signature Scheme v2): true" in verify.stdout, \
        verify.stdout + verify.stderr

    badging = subprocess.run(["aapt2", "dump", "badging", str(apk)], capture_output=True, text=True)
    assert badging.returncode == 0, badging.stderr
    assert "package: name='org.mobclf.demo'" in badging.stdout
    assert "launchable-activity: name='org.mobclf.demo.MainActivity'" in badging.stdout
    assert "sdkVersion:'23'" in badging.stdout

    with zipfile.ZipFile(apk) as archive:
        names = set(archive.namelist())
        assert "classes.dex" in names and "AndroidManifest.xml" in names
        dex = archive.read("classes.dex")
        for class_name in ("org/mobclf/demo/MainActivity", "org/mobclf/demo/PteClassifier",
                           "org/mobclf/core/DeviceBundle", "org/pytorch/executorch/Module"):
            assert f"L{class_name};".encode() in dex, class_name
        files = ("bundle.json", "model.pte", "labels.txt", "tokenizer/tokenizer.json")
        for name, directory in android_bundles.items():
            packaged = [f"{part}/{file}" for part in ("fast", "accurate") for file in files] + ["cascade.json"] \
                if name == "cascade" else list(files)
            for file in packaged:
                entry = f"assets/bundles/{name}/{file}"
                assert entry in names, entry
                assert archive.read(entry) == (directory / file).read_bytes(), entry
                if entry.endswith(".pte"):  # stored, not deflated (as Gradle's noCompress 'pte')
                    assert archive.getinfo(entry).compress_type == zipfile.ZIP_STORED


def test_bad_bundle_directories_are_refused_with_one_clear_line(tmp_path):
    no_description = tmp_path / "empty"
    no_description.mkdir()
    no_model = tmp_path / "onnx-only"
    no_model.mkdir()
    (no_model / "bundle.json").write_text("{}", encoding="utf-8")
    (no_model / "model.onnx").write_bytes(b"")
    half_cascade = tmp_path / "cascade"
    (half_cascade / "fast").mkdir(parents=True)
    (half_cascade / "cascade.json").write_text("{}", encoding="utf-8")
    (half_cascade / "fast" / "model.pte").write_bytes(b"")
    cases = {no_description: "no bundle.json", no_model: "no model.pte", tmp_path / "missing": "not a directory",
             half_cascade: "no accurate/model.pte"}
    for directory, message in cases.items():
        result = build_apk(directory, "--out", tmp_path / "never.apk")
        assert result.returncode != 0 and not (tmp_path / "never.apk").exists()
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and str(directory) in lines[0], result.stderr

    (no_model / "model.pte").write_bytes(b"")
    duplicate = build_apk(f"a={no_model}", f"a={no_model}", "--out", tmp_path / "never.apk")
    assert duplicate.returncode != 0 and "two bundles named 'a'" in duplicate.stderr


def test_missing_tools_name_the_installer(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text("{}", encoding="utf-8")
    (bundle / "model.pte").write_bytes(b"")
    env = dict(os.environ, MOBCLF_ANDROID_TOOLS=str(tmp_path / "no-tools"))
    result = build_apk(bundle, "--out", tmp_path / "never.apk", env=env)
    assert result.returncode != 0 and f"run {INSTALL}" in result.stderr, result.stderr
