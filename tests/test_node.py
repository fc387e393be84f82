"""Node: tests/node/test.mjs loads rnn.so into better-sqlite3 12 (its own bundled SQLite, >= 3.44), runs a window
query and the ordered aggregate rnn_predict(m, v ORDER BY t), and compares them (see the file's header).

Installs better-sqlite3 into tests/node/node_modules (git-ignored) with `npm install` when it is missing or not
major version 12 (13 crashes on Node 20); the first install compiles it, about 1.5 min on 2 cores. Skips when
node or npm is not installed. Not part of `make test` (tests/conftest.py leaves it out unless it is named):
run it with `make node-test`, as CI does.
"""
import json
import os
import shutil
import subprocess
import time

from rnnlib import EXT, ROOT, Skip

NODE_DIR = os.path.join(ROOT, "tests", "node")
MODULE = os.path.join(NODE_DIR, "node_modules", "better-sqlite3")


def installed_major():
    try:
        with open(os.path.join(MODULE, "package.json")) as f:
            version = json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return None
    if not os.path.exists(os.path.join(MODULE, "build", "Release", "better_sqlite3.node")):
        return None
    return int(version.split(".")[0])


def test_node_better_sqlite3():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise Skip("node or npm not installed (Debian: apt-get install nodejs npm)")
    if installed_major() != 12:
        t0 = time.time()
        r = subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True,
                           text=True, timeout=1800)
        assert r.returncode == 0, "npm install failed:\n%s\n%s" % (r.stdout[-3000:], r.stderr[-3000:])
        print("  (npm install of better-sqlite3: %.0f s)" % (time.time() - t0))
        assert installed_major() == 12, "npm installed better-sqlite3 %r, want 12" % installed_major()
    env = dict(os.environ, RNN_EXT=EXT)
    r = subprocess.run([node, os.path.join(NODE_DIR, "test.mjs")], cwd=ROOT, capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, "node tests/node/test.mjs failed:\n%s\n%s" % (r.stdout[-5000:], r.stderr[-3000:])
    assert "# pass 4\n" in r.stdout and "# fail 0\n" in r.stdout, r.stdout[-2000:]
