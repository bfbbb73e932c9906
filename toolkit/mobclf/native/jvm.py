"""The phone's tokenizers on the JVM: android-demo's ``org.mobclf.core`` (the Java the app ships) with its command-line
harness ``DeviceCli``, compiled once per source (cached under $MOBCLF_CACHE) with javac and Android's ``org.json``
(Debian ``libandroid-json-java``), both installed by ``android-demo/tools/install-test-tools.sh``.

    classes = build_device_cli()                        # java -cp CLASSES:ORG_JSON org.mobclf.core.DeviceCli ...
    jvm_encode_ms(Path("bundle/tokenizer"), texts)      # each text's warm encode time, ms

It needs the android-demo folder beside ``toolkit/`` (a checkout of mobclf, not an installed wheel).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from mobclf.errors import UserError
from mobclf.native.runner import native_cache

ANDROID_DEMO = Path(__file__).resolve().parents[3] / "android-demo"
SOURCES = [ANDROID_DEMO / "app/src/main/java/org/mobclf/core", ANDROID_DEMO / "app/src/test/java/org/mobclf/core"]
ORG_JSON = Path("/usr/share/java/com.android.json.jar")  # Debian libandroid-json-java: Android's org.json
INSTALL = "run android-demo/tools/install-test-tools.sh"


def build_device_cli() -> Path:
    """The compiled classes of org.mobclf.core and DeviceCli (Java 8, as the app), built once per source."""
    javac = shutil.which("javac")
    if javac is None or not ORG_JSON.is_file():
        raise UserError(f"javac and {ORG_JSON} are needed to run the phone's Java tokenizers; {INSTALL}")
    if not SOURCES[0].is_dir():
        raise UserError("the Java tokenizers are in android-demo/, beside toolkit/ in a checkout of mobclf; this "
                        "installed copy has none", path=ANDROID_DEMO)
    sources = sorted(path for folder in SOURCES for path in folder.glob("*.java"))
    key = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()[:16]
    classes = native_cache() / f"jvm-classes-{key}"
    if classes.is_dir():
        return classes
    classes.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=classes.name + ".", dir=classes.parent))
    built = subprocess.run([javac, "-source", "8", "-target", "8", "-Xlint:-options", "-encoding", "UTF-8",
                            "-cp", str(ORG_JSON), "-d", str(partial), *map(str, sources)],
                           capture_output=True, text=True)
    if built.returncode:
        shutil.rmtree(partial, ignore_errors=True)
        raise UserError(f"javac failed on the Java tokenizers: {built.stderr.strip().splitlines()[0]}")
    if classes.is_dir():  # another process built the same sources meanwhile
        shutil.rmtree(partial)
    else:
        os.replace(partial, classes)
    return classes


def jvm_encode_ms(tokenizer: Path, texts: list[str]) -> list[float]:
    """Each text's encode time (ms) by the saved ``tokenizer`` folder's Java tokenizer, warm (after 3 s and at least
    20 rounds over the texts; a shorter warm-up gave run-to-run spreads of 2x): the median of 9 encodes, so that a
    garbage collection landing on one text is not counted as that text's cost."""
    with tempfile.TemporaryDirectory(prefix="mobclf-jvm-") as folder:
        texts_file = Path(folder) / "texts.jsonl"
        texts_file.write_text("".join(json.dumps({"text": text}, ensure_ascii=False) + "\n" for text in texts),
                              encoding="utf-8")
        done = subprocess.run(["java", "-cp", f"{build_device_cli()}:{ORG_JSON}", "org.mobclf.core.DeviceCli",
                               "time", str(tokenizer), str(texts_file)], capture_output=True, text=True,
                              encoding="utf-8")
    if done.returncode:  # the first line of a Java exception is its message
        raise UserError(f"the Java tokenizer failed: {(done.stderr.strip().splitlines() or ['?'])[0]}",
                        path=tokenizer)
    return json.loads(done.stdout)["ms"]
