"""The Makefile's Debian packages: only `make deps` installs; `make test`, `make demo` and the others check and stop.

Runs make with a PATH whose first directory holds a stand-in `apt-get` (records its arguments, installs nothing)
and `id` (claims root or not), and a package list with one name no Debian archive has. Asserts, by exact output:
  - `make test`, `make demo`, `make check-deps` name the missing package and how to install it, exit non-zero,
    never call apt-get, and stop before building or running anything;
  - `make deps` as root runs `apt-get update` and then `apt-get install` of exactly the missing packages; not as
    root it prints the apt-get command and fails; with nothing missing it says so;
  - the lists hold python3-pytest (make test runs pytest), what the demo needs, and what make cluster-test needs
    (CLUSTER_DEPS, which `make deps` installs with TEST_DEPS; the deps cases here empty it).
"""
import os
import shutil
import subprocess
import tempfile

from rnnlib import ROOT, Skip

MISSING = "sqlite-rnn-no-such-package"
HOW = ("install them with: make deps (as root), or: sudo apt-get update && sudo apt-get install %s\n" % MISSING)


def run_make(args, uid):
    """(returncode, stdout, apt-get calls) of make ARGS with stand-in apt-get and id."""
    if not shutil.which("make") or not shutil.which("dpkg-query"):
        raise Skip("make or dpkg-query not installed")
    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "apt.log")
        for name, body in (("apt-get", 'echo "$*" >> %s' % log), ("id", "echo %d" % uid)):
            with open(os.path.join(d, name), "w") as f:
                f.write("#!/bin/sh\n%s\n" % body)
            os.chmod(os.path.join(d, name), 0o755)
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
        env["PATH"] = d + os.pathsep + env.get("PATH", "")
        r = subprocess.run(["make", "--no-print-directory"] + args, cwd=ROOT, capture_output=True, text=True,
                           env=env, timeout=120)
        calls = open(log).read().splitlines() if os.path.exists(log) else []
    return r.returncode, r.stdout, calls


def test_checks_do_not_install():
    for target, var in (("test", "TEST_DEPS"), ("demo", "DEMO_DEPS"), ("check-deps", "TEST_DEPS"),
                        ("node-test", "TEST_DEPS"), ("bench", "TEST_DEPS")):
        def case(target=target, var=var):
            for uid in (0, 1000):
                rc, out, calls = run_make([target, "%s=make %s" % (var, MISSING)], uid)
                assert (rc, out, calls) == (2, "missing Debian packages: %s\n" % MISSING + HOW, []), (
                    rc, out, calls)
        yield "make " + target, case


def test_deps_installs_as_root():
    rc, out, calls = run_make(["deps", "TEST_DEPS=make %s" % MISSING, "CLUSTER_DEPS="], 0)
    assert (rc, out) == (0, "installing: %s\n" % MISSING), (rc, out)
    assert calls == ["update -qq", "install -y -qq --no-install-recommends %s" % MISSING], calls


def test_deps_prints_the_command_otherwise():
    rc, out, calls = run_make(["deps", "TEST_DEPS=make %s" % MISSING, "CLUSTER_DEPS="], 1000)
    assert (rc, out, calls) == (2, "missing Debian packages: %s\nrun as root: apt-get update && apt-get install %s\n"
                                % (MISSING, MISSING), []), (rc, out, calls)


def test_deps_nothing_missing():
    rc, out, calls = run_make(["deps", "TEST_DEPS=make", "CLUSTER_DEPS="], 0)
    assert (rc, out, calls) == (0, "all Debian packages installed: make\n", []), (rc, out, calls)


def test_package_lists():
    rc, out, _ = run_make(["-s", "--eval", "show: ; @echo $(DEMO_DEPS); echo $(TEST_DEPS); echo $(CLUSTER_DEPS)",
                           "show"], 1000)
    assert rc == 0, out
    demo, test, cluster = out.splitlines()
    assert demo.split() == ["gcc", "libc6-dev", "make", "libsqlite3-dev", "sqlite3", "gnuplot-nox"], demo
    assert test.split() == demo.split() + ["python3", "python3-pytest"], test
    # make cluster-test (tests/cluster/cluster.mk); `make deps` installs them too
    assert cluster.split() == ["go-dqlite", "golang-go", "golang-github-canonical-go-dqlite-dev", "libdqlite-dev"], cluster
