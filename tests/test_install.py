"""`make install` / `make uninstall` (tests/ecosystem.mk) into a DESTDIR, for the default PREFIX and another one.

Asserts: install puts rnn.so in <prefix>/lib/sqlite-rnn/, python/sqlite_rnn.py in the directory Debian's python3
searches for that prefix (/usr: lib/python3/dist-packages; /usr/local, and a prefix it does not search:
lib/python3.N/dist-packages, N the running Python's minor version) and sql/rnn_models.sql in
<prefix>/share/sqlite-rnn/, byte for byte, and nothing else; the installed module, imported by that Python from
there, finds and loads the installed rnn.so (not the checkout's); the sqlite3 shell loads it by path; uninstall
removes every file it installed (nothing is left in DESTDIR but empty directories above ours). And Debian's
python3 searches those directories for /usr/local and /usr whether or not they exist yet (site.getsitepackages():
sys.path holds only the ones some package has created, so it would make the test depend on what is installed).
"""
import filecmp
import os
import shutil
import subprocess
import site
import sys
import tempfile


from rnnlib import ROOT, Skip
from test_static import make

DEBIAN = sys.executable.startswith("/usr/bin/") and os.path.exists("/etc/debian_version")


def pydir(prefix):
    """Where make install puts sqlite_rnn.py, under the prefix (make test runs this with $(PYTHON))."""
    if prefix == "/usr":
        return "lib/python3/dist-packages"
    return "lib/python%d.%d/dist-packages" % sys.version_info[:2]


def installed(prefix):
    """path under the prefix -> source in the checkout"""
    return {"lib/sqlite-rnn/rnn.so": "rnn.so",
            pydir(prefix) + "/sqlite_rnn.py": "python/sqlite_rnn.py",
            "share/sqlite-rnn/rnn_models.sql": "sql/rnn_models.sql"}

LOAD = """
import sqlite3, sqlite_rnn
con = sqlite3.connect(":memory:")
print(sqlite_rnn.load(con))
print(sqlite_rnn.__file__)
print(con.execute("SELECT rnn_version()").fetchone()[0])
"""


def files_under(d):
    return sorted(os.path.relpath(os.path.join(p, f), d) for p, _, fs in os.walk(d) for f in fs)


def check_prefix(prefix):
    with tempfile.TemporaryDirectory() as dest:
        r = make("install", DESTDIR=dest, PREFIX=prefix, PYTHON=sys.executable)
        assert r.returncode == 0, "make install failed:\n%s\n%s" % (r.stdout, r.stderr)
        root = dest + prefix
        want = sorted(os.path.relpath(os.path.join(root, p), dest) for p in installed(prefix))
        assert files_under(dest) == want, files_under(dest)
        for path, src in installed(prefix).items():
            assert filecmp.cmp(os.path.join(root, path), os.path.join(ROOT, src), shallow=False), path
        so = os.path.join(root, "lib", "sqlite-rnn", "rnn.so")
        moddir = os.path.join(root, pydir(prefix))
        env = {k: v for k, v in os.environ.items() if k != "SQLITE_RNN_PATH"}
        env["PYTHONPATH"] = moddir
        r = subprocess.run([sys.executable, "-c", LOAD], cwd=dest, capture_output=True, text=True, env=env,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "%s\n%s\n0.1.0\n" % (so, os.path.join(moddir, "sqlite_rnn.py")), r.stdout
        if shutil.which("sqlite3"):
            r = subprocess.run(["sqlite3", ":memory:", ".load %s" % so[:-3], "SELECT rnn_version();"],
                               capture_output=True, text=True, timeout=60)
            assert (r.returncode, r.stdout, r.stderr) == (0, "0.1.0\n", ""), r
        r = make("uninstall", DESTDIR=dest, PREFIX=prefix, PYTHON=sys.executable)
        assert r.returncode == 0, "make uninstall failed:\n%s\n%s" % (r.stdout, r.stderr)
        assert files_under(dest) == [], files_under(dest)
        assert not os.path.exists(os.path.join(root, "lib", "sqlite-rnn"))
        assert not os.path.exists(os.path.join(root, "share", "sqlite-rnn"))


def test_install_uninstall():
    if not shutil.which("make") or not shutil.which("install"):
        raise Skip("make or install not found")
    for prefix in ("/usr/local", "/usr", "/opt/sqlite-rnn") if DEBIAN else ("/opt/sqlite-rnn",):
        yield prefix, lambda prefix=prefix: check_prefix(prefix)


def test_default_prefix_is_on_debian_python_path():
    if not DEBIAN:
        raise Skip("not Debian's python3")
    for prefix in ("/usr/local", "/usr"):
        assert os.path.join(prefix, pydir(prefix)) in site.getsitepackages(), (prefix, site.getsitepackages())
