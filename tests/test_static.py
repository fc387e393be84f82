"""Static linking: `make static` compiles the extension with -DSQLITE_CORE into build/static/librnn.a and links
tests/static_main.c with it and the system SQLite; the program registers sqlite3_rnn_init with
sqlite3_auto_extension, opens :memory: and runs queries on sql/demo_model.safetensors.

Asserts: the archive holds sqlite3_rnn_init and no sqlite3_api pointer (so -DSQLITE_CORE took effect: the
extension calls SQLite directly); the program does not load rnn.so; its output is exactly EXPECTED (the same
numbers as the README's examples for these readings), exit status 0 and nothing on stderr.
"""
import os
import shutil
import subprocess

from rnnlib import ROOT, Skip

EXPECTED = """\
rnn_version|0.1.0
rnn_eval|21.926
rnn_info|["gru",16]
0|18.4|18.423
600|18.5|18.348
1200|18.5|18.438
1800|25.0|21.926
1|21.93
2|22.07
error: rnn_predict(): model expects 1 feature, got 2
"""


def make(*targets, **variables):
    """Runs make in the repository root for targets of tests/ecosystem.mk; returns the CompletedProcess."""
    cmd = ["make", "--no-print-directory"] + list(targets) + ["%s=%s" % kv for kv in variables.items()]
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)


def test_static_program():
    for tool in ("make", "cc", "ar", "nm"):
        if not shutil.which(tool):
            raise Skip("%s not installed" % tool)
    r = make("static")
    assert r.returncode == 0, "make static failed:\n%s\n%s" % (r.stdout[-3000:], r.stderr[-3000:])
    archive = os.path.join(ROOT, "build", "static", "librnn.a")
    symbols = subprocess.run(["nm", archive], capture_output=True, text=True, check=True).stdout
    assert " T sqlite3_rnn_init\n" in symbols, "librnn.a lacks sqlite3_rnn_init"
    assert "sqlite3_api" not in symbols, "librnn.a was not compiled with -DSQLITE_CORE"
    # an application links librnn.a beside its own code: every name it defines is ours by prefix
    defined = subprocess.run(["nm", "-g", "--defined-only", archive], capture_output=True, text=True,
                             check=True).stdout
    names = [line.split()[2] for line in defined.splitlines() if len(line.split()) == 3]
    foreign = [n for n in names if not n.startswith("rnn_") and n != "sqlite3_rnn_init"]
    assert len(names) > 50 and foreign == [], foreign
    program = os.path.join(ROOT, "build", "static_main")
    r = subprocess.run([program], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, LD_DEBUG="files"))
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "rnn.so" not in r.stderr, "static_main loaded rnn.so"
    assert r.stdout == EXPECTED, "got:\n%s" % r.stdout
    r = subprocess.run([program], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.stderr == "", r.stderr
    r = subprocess.run([program, os.path.join(ROOT, "no-such-model")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "cannot read" in r.stderr and r.stdout == "", (r.returncode, r.stderr)
