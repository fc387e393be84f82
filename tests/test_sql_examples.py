"""The runnable examples of sql/: every sql/*.sql except demo.sql (tests/test_demo.py runs that one),
train_long_memory.sql (tests/test_train_proof.py's test_lesson_chart runs it and checks the same) and
lang.sql while sql/lang_model.safetensors is absent runs in the sqlite3 shell as a user would run it
(`sqlite3 < sql/NAME.sql` from the repository root, in-memory database) and must exit 0, write nothing to
stderr, and print exactly sql/expected/NAME.out. Examples that use the extension must start with `.load ./rnn`.

After changing an example on purpose, regenerate its expected output, and read it before committing:
    /usr/bin/python3 tests/test_sql_examples.py --write [NAME ...]
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rnnlib import ROOT, Skip  # noqa: E402

SQL = os.path.join(ROOT, "sql")
EXPECTED = os.path.join(SQL, "expected")
NOT_RUN = {"demo.sql": "tests/test_demo.py runs it",
           "train_long_memory.sql": "tests/test_train_proof.py's test_lesson_chart runs it once for the chart and "
                                    "checks its output the same way"}


def examples():
    """{name: why skipped or None} of sql/*.sql."""
    out = {}
    for f in sorted(os.listdir(SQL)):
        if f.endswith(".sql") and f not in NOT_RUN:
            name = f[:-4]
            out[name] = None
            if name == "lang" and not os.path.exists(os.path.join(SQL, "lang_model.safetensors")):
                out[name] = "sql/lang_model.safetensors absent (made by sql/train_lang.py)"
    return out


def run(name):
    with open(os.path.join(SQL, name + ".sql"), "rb") as f:
        return subprocess.run(["sqlite3", ":memory:"], stdin=f, cwd=ROOT, capture_output=True, timeout=300)


def check(name):
    text = open(os.path.join(SQL, name + ".sql"), encoding="utf-8").read()
    commands = [line for line in text.splitlines() if line.strip() and not line.startswith("--")]
    if any("rnn_" in c.replace("rnn_models", "") for c in commands):   # uses a function of the extension
        assert commands[0] == ".load ./rnn", "sql/%s.sql: first command %r, want .load ./rnn" % (name, commands[0])
    r = run(name)
    stderr = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 0 and not stderr, "sql/%s.sql: exit %d, stderr:\n%s" % (name, r.returncode, stderr)
    path = os.path.join(EXPECTED, name + ".out")
    assert os.path.exists(path), "no sql/expected/%s.out: run /usr/bin/python3 tests/test_sql_examples.py " \
                                 "--write %s and check it by eye" % (name, name)
    with open(path, "rb") as f:
        want = f.read()
    assert r.stdout == want, "sql/%s.sql: output differs from sql/expected/%s.out:\n%s" % (
        name, name, r.stdout.decode("utf-8", "replace"))


def test_sql_examples():
    if not shutil.which("sqlite3"):
        raise Skip("sqlite3 shell not installed")
    found = examples()
    assert {"anomalies", "trigger", "forecast"} <= set(found), sorted(found)
    for name, skip in found.items():
        def case(name=name, skip=skip):
            if skip:
                raise Skip(skip)
            check(name)
        yield "sql/%s.sql" % name, case


def write(names):
    os.makedirs(EXPECTED, exist_ok=True)
    for name in names or [n for n, skip in examples().items() if not skip]:
        r = run(name)
        if r.returncode or r.stderr:
            sys.exit("sql/%s.sql: exit %d, stderr:\n%s" % (name, r.returncode, r.stderr.decode()))
        with open(os.path.join(EXPECTED, name + ".out"), "wb") as f:
            f.write(r.stdout)
        print("wrote sql/expected/%s.out (%d lines)" % (name, r.stdout.count(b"\n")))


if __name__ == "__main__":
    if sys.argv[1:2] != ["--write"]:
        sys.exit(__doc__)
    write(sys.argv[2:])
