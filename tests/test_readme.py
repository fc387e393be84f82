"""Executable docs: every ```sql block of README.md runs in the sqlite3 shell (fresh in-memory
database, extension loaded, tests/readme_setup.sql applied) and must print exactly the
```output block that follows it; a block without one must run without error."""
import os
import re
import shutil
import subprocess

from rnnlib import ROOT, Skip

FENCE = re.compile(r"```(sql|output)\n(.*?)```", re.S)


def blocks():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    found = [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]
    out = []
    for i, (kind, body, line) in enumerate(found):
        if kind != "sql":
            continue
        want = found[i + 1][1] if i + 1 < len(found) and found[i + 1][0] == "output" else None
        out.append((line, body, want))
    return out


def run_block(body):
    script = ".bail on\n.load ./rnn\n.read tests/readme_setup.sql\n" + body
    return subprocess.run(["sqlite3", ":memory:"], input=script, capture_output=True, text=True, cwd=ROOT)


def test_readme_examples():
    if not shutil.which("sqlite3"):
        raise Skip("sqlite3 shell not installed")
    found = blocks()
    assert len(found) >= 5, "README lost its examples"
    for line, body, want in found:
        def case(body=body, want=want, line=line):
            r = run_block(body)
            if want is None:
                assert r.returncode == 0 and not r.stderr, (line, r.stderr)
            else:
                assert (r.stdout + r.stderr) == want, "README line %d:\n got: %r\nwant: %r" % (
                    line, r.stdout + r.stderr, want)
        yield "README.md:%d" % line, case
