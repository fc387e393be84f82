"""The test runner itself (tests/conftest.py under pytest, as `make test` runs it), on small modules written here.

Each check copies pytest.ini, tests/conftest.py and tests/rnnlib.py into a temporary tree with the modules below,
runs `python3 -m pytest` there in a subprocess, and reads the outcome of every item from a JUnit XML report and the
last line of the output. Asserts, by exact names and messages:
  - a generator test's (label, callable) pairs are items test_x[label]; a failing case fails alone; -k and a node
    id select single cases; cases run interleaved with the generator (inside its `with` block);
  - rnnlib.Skip in a test, a case, a generator or a module's top level is a skip with its reason;
  - a module that fails to import is a failure with its traceback, and the other modules still run;
  - a function that returns cases runs them all and names each failing one;
  - a generator that yields nothing fails; one whose labels change between collection and run (a clock seed)
    runs its cases by position and shows the label of the run in a failure's output;
  - --timeout fails a test that runs longer (also one that catches Exception);
  - RNN_TEST_HIDE hides a package in the test process and in Python subprocesses;
  - the output ends with `N passed, N failed, N skipped`.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import xml.etree.ElementTree as ET

from rnnlib import ROOT

MODULES = {
    "test_gen.py": '''
        import os, tempfile
        from rnnlib import Skip

        def test_plain():
            pass

        def test_plain_fails():
            assert 1 == 2, "plain failure"

        def test_plain_skips():
            raise Skip("no frobnicator")

        def test_table():
            for n in (1, 2, 3):
                def case(n=n):
                    assert n != 2, "two is wrong"
                yield "n=%d" % n, case
            yield "skipped", lambda: (_ for _ in ()).throw(Skip("case skip"))

        def test_inside_with():
            with tempfile.TemporaryDirectory() as d:
                for name in ("a", "b"):
                    path = os.path.join(d, name)
                    open(path, "w").close()
                    yield name, lambda path=path: os.stat(path)

        def test_generator_skips():
            raise Skip("generator skip")
            yield "never", lambda: None

        def test_generator_breaks_midway():
            yield "first", lambda: None
            raise ValueError("broken after first")

        def test_nothing():
            return
            yield

        def test_returns_cases():
            def cases():
                yield "good", lambda: None
                yield "bad", lambda: 1 / 0
            return cases()

        def test_returns_skipped_cases():
            def skip():
                raise Skip("no quux")
            return iter([("a", skip), ("b", skip)])

        def test_clock_labels():
            import time
            yield "t=%r" % time.perf_counter(), lambda: None
            yield "u=%r" % time.perf_counter(), lambda: 1 / 0

        def test_slow():
            import time
            try:
                time.sleep(30)
            except Exception:
                pass
    ''',
    "test_broken.py": '''
        import no_such_module_here
        def test_never():
            pass
    ''',
    "test_module_skip.py": '''
        from rnnlib import Skip
        raise Skip("module needs a quux")
        def test_never():
            pass
    ''',
    "test_later.py": '''
        import subprocess, sys
        def test_runs_after_broken_module():
            pass
        def test_hidden():
            try:
                import fakepkg
            except ModuleNotFoundError as e:
                assert "hidden by RNN_TEST_HIDE" in str(e), e
                r = subprocess.run([sys.executable, "-c", "import fakepkg"], capture_output=True, text=True)
                assert r.returncode == 1 and "hidden by RNN_TEST_HIDE" in r.stderr, r.stderr
                return
            assert fakepkg.HERE
    ''',
    "fakepkg/__init__.py": "HERE = True\n",
}


def run_pytest(args, env_extra=None):
    """{item name: (outcome, message)} from the JUnit report, and the output's lines."""
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(os.path.join(ROOT, "pytest.ini"), d)
        os.mkdir(os.path.join(d, "tests"))
        for name in ("conftest.py", "rnnlib.py"):
            shutil.copy(os.path.join(ROOT, "tests", name), os.path.join(d, "tests"))
        for name, text in MODULES.items():
            path = os.path.join(d, "tests", name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(textwrap.dedent(text))
        env = {k: v for k, v in os.environ.items() if k not in ("RNN_TEST_HIDE", "PYTHONPATH")}
        env["PYTHONPATH"] = os.path.join(d, "tests")   # so a subprocess finds fakepkg unless it is hidden
        env.update(env_extra or {})
        r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--junitxml=report.xml",
                            "-o", "junit_logging=system-out"]
                           + args, cwd=d, capture_output=True, text=True, env=env, timeout=300)
        outcomes = {}
        for case in ET.parse(os.path.join(d, "report.xml")).iter("testcase"):
            outcome, message = "passed", ""
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    outcome, message = child.tag, (child.get("message") or "") + "\n" + (child.text or "") + message
                elif child.tag == "system-out":
                    message += "\n" + (child.text or "")
            outcomes[case.get("name") or case.get("classname")] = (outcome, message)
    return r, outcomes, r.stdout.splitlines()


def test_whole_run():
    r, got, lines = run_pytest(["--timeout=2"])
    assert r.returncode == 1, r.stdout
    assert lines[-1] == "9 passed, 8 failed, 5 skipped", lines[-5:]
    got = {(n[:19] + "*]" if n.startswith("test_clock_labels[") else n): v for n, v in got.items()}
    outcome = {name: o for name, (o, _) in got.items()}
    assert outcome == {
        "test_plain": "passed", "test_plain_fails": "failure", "test_plain_skips": "skipped",
        "test_table[n=1]": "passed", "test_table[n=2]": "failure", "test_table[n=3]": "passed",
        "test_table[skipped]": "skipped",
        "test_inside_with[a]": "passed", "test_inside_with[b]": "passed",
        "test_generator_skips": "skipped",
        "test_generator_breaks_midway[first]": "passed", "test_generator_breaks_midway": "failure",
        "test_nothing": "failure", "test_returns_cases": "failure", "test_returns_skipped_cases": "skipped",
        "test_clock_labels[t*]": "passed", "test_clock_labels[u*]": "failure", "test_slow": "failure",
        "tests.test_broken": "error", "tests.test_module_skip": "skipped",
        "test_runs_after_broken_module": "passed", "test_hidden": "passed",
    }, outcome
    msg = {name: m for name, (_, m) in got.items()}
    assert "two is wrong" in msg["test_table[n=2]"]
    assert "/tests/test_gen.py:11: no frobnicator" in msg["test_plain_skips"], msg["test_plain_skips"]
    assert "case skip" in msg["test_table[skipped]"] and "generator skip" in msg["test_generator_skips"]
    assert "module needs a quux" in msg["tests.test_module_skip"]
    assert "/tests/test_gen.py:46: a: no quux; b: no quux" in msg["test_returns_skipped_cases"], msg[
        "test_returns_skipped_cases"]
    assert "ModuleNotFoundError: No module named 'no_such_module_here'" in msg["tests.test_broken"]
    assert "ValueError: broken after first" in msg["test_generator_breaks_midway"]
    assert "test_nothing yielded no cases" in msg["test_nothing"]
    assert "1 of 2 cases failed" in msg["test_returns_cases"] and "test_returns_cases[bad]" in msg[
        "test_returns_cases"] and "ZeroDivisionError" in msg["test_returns_cases"]
    assert re.search(r"^case 1 of test_clock_labels is labelled 'u=[0-9.]+' in this run \(when collected: "
                     r"'u=[0-9.]+'\)$", msg["test_clock_labels[u*]"], re.M), msg["test_clock_labels[u*]"]
    assert "tests/test_gen.py::test_slow ran longer than 2 s (--timeout)" in msg["test_slow"]


def test_selection():
    r, got, lines = run_pytest(["-k", "table and 3", "tests/test_gen.py"])
    assert {n: o for n, (o, _) in got.items()} == {"test_table[n=3]": "passed"}, got
    assert lines[-1] == "1 passed, 0 failed, 0 skipped", lines[-3:]
    r, got, lines = run_pytest(["tests/test_gen.py::test_table[n=2]", "tests/test_gen.py::test_inside_with"])
    assert {n: o for n, (o, _) in got.items()} == {
        "test_table[n=2]": "failure", "test_inside_with[a]": "passed", "test_inside_with[b]": "passed"}, got
    assert lines[-1] == "2 passed, 1 failed, 0 skipped", lines[-3:]


def test_hide():
    r, got, lines = run_pytest(["tests/test_later.py"], {"RNN_TEST_HIDE": "fakepkg"})
    assert {n: o for n, (o, _) in got.items()} == {
        "test_runs_after_broken_module": "passed", "test_hidden": "passed"}, (got, r.stdout)
    assert "optional packages: torch" in r.stdout, r.stdout
