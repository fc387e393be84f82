"""build/rnn_autoload.so (ext/autoload.c) and tests/cluster/run.sh, the pieces of `make cluster-test` that run in
seconds; the 3-node run itself is `make cluster-test` (.ci/run runs it), not part of this suite.

Asserts, by exact output:
  - the autoload library exports sqlite3_rnn_init alone, and preloaded into a program that links the system
    libsqlite3 and never loads an extension (Debian's python3 here), every connection has the rnn_* functions;
  - go-dqlite refuses it without GO_DQLITE_MULTITHREAD=1 (its package init calls sqlite3_config, which fails once
    the library's constructor has initialised SQLite) and starts with it: the reason README "Scaling out" gives;
  - run.sh, cut short by its deadline (CLUSTER_TIMEOUT), prints FAIL lines, exits 1, and leaves no process and no
    file behind.
"""
import os
import shutil
import subprocess
import tempfile

from rnnlib import ROOT, Skip

AUTOLOAD = os.path.join(ROOT, "build", "rnn_autoload.so")
CLIENT = os.path.join(ROOT, "build", "rnn-cluster")
PANIC = "panic: set single thread mode: bad parameter or other API misuse"


def clean_env(**extra):
    """The environment without make's variables and without a preloaded sanitizer runtime (make sanitize)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "LD_PRELOAD", "GO_DQLITE_MULTITHREAD")}
    env.update(extra)
    return env


def make(*targets):
    for tool in ("make", "cc", "ar"):
        if not shutil.which(tool):
            raise Skip("%s not installed" % tool)
    r = subprocess.run(["make", "--no-print-directory"] + list(targets), cwd=ROOT, capture_output=True, text=True,
                       env=clean_env(), timeout=600)
    assert r.returncode == 0, "make %s failed:\n%s\n%s" % (" ".join(targets), r.stdout[-3000:], r.stderr[-3000:])


def test_autoload_library():
    make("autoload")
    if not shutil.which("nm"):
        raise Skip("nm not installed")
    exported = subprocess.run(["nm", "-D", "--defined-only", AUTOLOAD], capture_output=True, text=True,
                              check=True).stdout.split()
    assert exported[2::3] == ["sqlite3_rnn_init"], exported
    query = ("import sqlite3; c = sqlite3.connect(':memory:'); "
             "print(*c.execute(\"SELECT rnn_version(), json_extract(rnn_info(readfile), '$.cell') FROM "
             "(SELECT ? AS readfile)\", (open('sql/demo_model.safetensors', 'rb').read(),)).fetchone())")
    r = subprocess.run(["/usr/bin/python3", "-c", query], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env=clean_env(LD_PRELOAD=AUTOLOAD))
    assert (r.returncode, r.stdout, r.stderr) == (0, "0.1.0 gru\n", ""), r
    r = subprocess.run(["/usr/bin/python3", "-c", query], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env=clean_env())
    assert r.returncode == 1 and r.stderr.endswith("sqlite3.OperationalError: no such function: rnn_version\n"), r


def test_go_dqlite_needs_multithread():
    if not shutil.which("dqlite"):
        raise Skip("dqlite not installed (Debian package go-dqlite)")
    make("autoload")
    r = subprocess.run(["dqlite", "--help"], capture_output=True, text=True, timeout=60,
                       env=clean_env(LD_PRELOAD=AUTOLOAD))
    assert (r.returncode, r.stdout, r.stderr.split("\n")[0]) == (2, "", PANIC), r
    r = subprocess.run(["dqlite", "--help"], capture_output=True, text=True, timeout=60,
                       env=clean_env(LD_PRELOAD=AUTOLOAD, GO_DQLITE_MULTITHREAD="1"))
    assert (r.returncode, r.stdout.split("\n")[0], r.stderr) == (0, "Standard dqlite shell", ""), r


def processes_mentioning(text):
    """Pids of the processes whose command line contains text."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except (OSError, ValueError):
            pass
    return found


def test_run_deadline_stops_everything():
    if not shutil.which("dqlite-demo") or not shutil.which("go"):
        raise Skip("dqlite-demo or go not installed (Debian packages go-dqlite, golang-go)")
    make("rnn.so", "autoload", "cluster-client", "cluster-node")
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([os.path.join(ROOT, "tests", "cluster", "run.sh")], capture_output=True, text=True,
                           timeout=120, env=clean_env(CLUSTER_TIMEOUT="2", TMPDIR=tmp))
        lines = r.stdout.splitlines()
        assert r.returncode == 1 and lines[-2].startswith("FAIL: ") and lines[-1] == "FAIL: cluster-test", r
        assert processes_mentioning(tmp) == [], r
        assert os.listdir(tmp) == [], r
