"""How pytest runs this project's tests (`make test` is `python3 -m pytest`, settings in pytest.ini).

The test style (no pytest import needed in a test module):
  1. A test is a module-level function test_*(). It passes when it returns without raising.
  2. A generator test yields (label, callable) pairs. Each pair is its own test item, test_x[label], so -k,
     --collect-only and a node id (`pytest 'tests/test_window.py::test_frames[gru ROWS UNBOUNDED PRECEDING]'`)
     see every case. The generator runs twice: once at collection, only to learn the labels (cases are not
     called), then again while the cases run, interleaved as a plain loop would run them: case k is called right
     after the generator yields it and before the generator resumes. So a case may use what the generator has
     set up around it (a connection, a temporary directory, a `with` block). Cases are matched by position: a
     label that differs when run (a seed from the clock) is printed, so a failure's captured output shows it.
     A generator that yields no case at all fails, and so does one that yields fewer or more cases when run.
  3. A function that returns an iterator of such pairs instead (cases known only when run, e.g. fresh random
     models from a clock seed) runs them inside its one item; it fails listing every failing case's label.
  4. rnnlib.Skip("why") raised by a test, a case, a generator or a module's top level is a pytest skip.
  5. A module that fails to import is reported with its traceback (a collection error) and the run goes on.
  6. Every test, and every case, has a time limit: --timeout=SECONDS (ini `timeout`, 0 = none). A test past it
     fails with its traceback (SIGALRM: a test inside one long C call stops when that call returns; a
     subprocess it waits for is killed). When the python3-pytest-timeout plugin is installed it provides the
     option instead.
  7. The run ends with one line `N passed, N failed, N skipped` (failed counts collection, setup and teardown
     errors too), after pytest's own summary: CI greps it.
  8. RNN_TEST_HIDE=torch,numpy makes those packages unimportable, here and in every Python subprocess a test
     starts (the stubs go first on PYTHONPATH): proof that no test depends on which optional packages are
     installed.
  9. tests/test_node.py (npm compiles better-sqlite3, about 80 s) runs only when named: `make node-test`.
"""
import atexit
import contextlib
import importlib.abc
import importlib.metadata
import importlib.util
import inspect
import os
import shutil
import signal
import sys
import tempfile
import traceback

import pytest

from rnnlib import Skip

collect_ignore = ["test_node.py"]     # rule 9; pytest still collects a path named on its command line

OPTIONAL = ("torch", "numpy")         # the optional packages the report header names


# ---- rule 8: hide optional packages ----------------------------------------------------------------------------

class _Hidden(importlib.abc.MetaPathFinder):
    """First on sys.meta_path: importing a hidden package (or any submodule) fails as if it were not installed."""

    def __init__(self, names):
        self.names = frozenset(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError("No module named %r (hidden by RNN_TEST_HIDE)" % fullname, name=fullname)
        return None


def _hide(names):
    """Hide `names` in this process (a finder) and in Python subprocesses (stub packages first on PYTHONPATH)."""
    for name in names:
        if not name.isidentifier():
            raise pytest.UsageError("RNN_TEST_HIDE: %r is not a package name" % name)
        if name in sys.modules:
            raise pytest.UsageError("RNN_TEST_HIDE: %s was imported before tests/conftest.py could hide it" % name)
    sys.meta_path.insert(0, _Hidden(names))
    stubs = tempfile.mkdtemp(prefix="rnn-test-hide-")
    atexit.register(shutil.rmtree, stubs, True)
    for name in names:
        os.mkdir(os.path.join(stubs, name))
        with open(os.path.join(stubs, name, "__init__.py"), "w") as f:
            f.write("raise ModuleNotFoundError(%r, name=%r)\n" % (
                "No module named %r (hidden by RNN_TEST_HIDE)" % name, name))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (stubs, os.environ.get("PYTHONPATH")) if p)


HIDDEN = sorted({n.strip() for n in os.environ.get("RNN_TEST_HIDE", "").split(",") if n.strip()})
if HIDDEN:
    _hide(HIDDEN)      # at import of this conftest: before any test module is imported


def pytest_report_header(config):
    seen = []
    for name in OPTIONAL:
        if name in HIDDEN:
            seen.append("%s hidden (RNN_TEST_HIDE)" % name)
            continue
        if importlib.util.find_spec(name) is None:       # found, not imported: importing torch takes seconds
            seen.append("%s absent" % name)
            continue
        try:
            seen.append("%s %s" % (name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            seen.append("%s (version unknown)" % name)
    return "optional packages: " + ", ".join(seen)


# ---- rule 5, and the time limit of rule 6 --------------------------------------------------------------------------

def pytest_addoption(parser, pluginmanager):
    if pluginmanager.has_plugin("timeout"):
        return      # python3-pytest-timeout provides --timeout and the ini key
    parser.addoption("--timeout", type=float, default=None, metavar="SECONDS",
                     help="fail a test (or one case of a generator test) that runs longer; 0: no limit")
    parser.addini("timeout", "default for --timeout", default="0")


def pytest_configure(config):
    config.option.continue_on_collection_errors = True      # rule 5


class Timeout(BaseException):
    """Raised in the test by SIGALRM. A BaseException, so a test's `except Exception` cannot swallow it."""


def _time_limit(config):
    if config.pluginmanager.has_plugin("timeout"):
        return 0.0
    opt = config.getoption("timeout")
    return float(opt if opt is not None else config.getini("timeout") or 0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    limit = _time_limit(item.config)
    if limit <= 0 or not hasattr(signal, "setitimer"):
        yield
        return

    def expired(signum, frame):
        raise Timeout("%s ran longer than %g s (--timeout)" % (item.nodeid, limit))

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---- rule 4 ----------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _skips():
    __tracebackhide__ = True
    try:
        yield
    except Skip as e:
        # reported at the test's own line, not this file's
        raise pytest.skip.Exception(str(e) or "skipped", _use_item_location=True) from None


class _Module(pytest.Module):
    def _getobj(self):
        try:
            return super()._getobj()
        except Skip as e:   # reported at the line that raised it
            raise pytest.skip.Exception(str(e) or "skipped", allow_module_level=True).with_traceback(
                e.__traceback__) from None


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path, parent):
    if module_path.name != "__init__.py":
        return _Module.from_parent(parent, path=module_path)
    return None


# ---- rules 1 and 3: plain functions ------------------------------------------------------------------------------

def _run_returned(name, cases):
    """Rule 3: every (label, callable) of `cases`, each run even when an earlier one failed."""
    __tracebackhide__ = True
    failed, ran, skipped = [], 0, []
    for pair in cases:
        label, case = _pair(name, pair)
        try:
            case()
            ran += 1
        except Skip as e:
            skipped.append("%s: %s" % (label, e))
        except Exception:
            failed.append("%s[%s]\n%s" % (name, label, traceback.format_exc()))
    if failed:
        pytest.fail("%d of %d cases failed:\n\n%s" % (
            len(failed), len(failed) + ran + len(skipped), "\n".join(failed)), pytrace=False)
    if skipped and not ran:
        raise pytest.skip.Exception("; ".join(skipped), _use_item_location=True)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    __tracebackhide__ = True
    fn = pyfuncitem.obj
    if inspect.iscoroutinefunction(fn):
        return None
    args = {a: pyfuncitem.funcargs[a] for a in pyfuncitem._fixtureinfo.argnames}
    with _skips():
        result = fn(**args)
        if hasattr(result, "__next__"):
            _run_returned(pyfuncitem.name, result)
    return True


# ---- rule 2: generator tests -------------------------------------------------------------------------------------

def _pair(name, pair):
    __tracebackhide__ = True
    if not (isinstance(pair, tuple) and len(pair) == 2 and callable(pair[1])):
        raise TypeError("%s must yield (label, callable) pairs, got %r" % (name, pair))
    return str(pair[0]), pair[1]


def _clean(label):
    """A label as an item name: control characters escaped, so a label never spans lines of the report."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in label)


class _Cases:
    """One generator test: its labels from collection, and the generator that runs its cases."""

    def __init__(self, name, func):
        self.name, self.func = name, func
        self.labels = []            # cleaned labels in the order collected
        self.collect_error = None   # what ended collection early (formatted), or None
        self.gen, self.pos = None, 0

    def collect(self):
        gen = self.func()
        try:
            for pair in gen:
                self.labels.append(_clean(_pair(self.name, pair)[0]))
        except (Exception, pytest.skip.Exception) as e:
            self.collect_error = "".join(traceback.format_exception_only(type(e), e)).strip()
        finally:
            gen.close()

    def advance(self, k):
        """(label, callable) of case k, the generator advanced to it, or None if it ends first. Cases before k
        are passed over, not run. What the generator raises propagates."""
        __tracebackhide__ = True
        if self.gen is None or self.pos > k:
            self.close()
            self.gen, self.pos = self.func(), 0
        pair = None
        while self.pos <= k:
            try:
                pair = next(self.gen)
            except StopIteration:
                self.gen = None
                return None
            except BaseException:
                self.gen = None
                raise
            self.pos += 1
        return _pair(self.name, pair)

    def case(self, k):
        """The callable of case k, checked to be the case collected as k."""
        __tracebackhide__ = True
        got = self.advance(k)
        if got is None:
            pytest.fail("%s yielded %d cases when run, %d when collected" % (
                self.name, self.pos, len(self.labels)), pytrace=False)
        if _clean(got[0]) != self.labels[k]:     # e.g. a seed from the clock: shown with a failure's output
            print("case %d of %s is labelled %r in this run (when collected: %r)" % (k, self.name, got[0],
                                                                                   self.labels[k]))
        return got[1]

    def finish(self):
        """Run the generator to its end (after its last case), as a plain loop would."""
        __tracebackhide__ = True
        if self.gen is None or self.pos != len(self.labels):
            self.close()
            return
        gen, self.gen = self.gen, None
        try:
            pair = next(gen)
        except StopIteration:
            return
        gen.close()
        pytest.fail("%s yielded more cases when run than when collected: %r" % (self.name, pair), pytrace=False)

    def close(self):
        if self.gen is not None:
            gen, self.gen = self.gen, None
            gen.close()


class CaseItem(pytest.Item):
    """Case `index` of a generator test, named test_x[label]."""

    def __init__(self, *, cases, index, **kw):
        super().__init__(**kw)
        self.cases, self.index = cases, index

    def runtest(self):
        __tracebackhide__ = True
        with _skips():
            self.cases.case(self.index)()

    def reportinfo(self):
        return self.path, self.cases.func.__code__.co_firstlineno - 1, self.name

    def _prunetraceback(self, excinfo):
        tb = excinfo.traceback
        cut = tb.cut(path=self.path)
        excinfo.traceback = (cut if cut != tb else tb).filter()


class _Tail(CaseItem):
    """The item for a generator that ended collection with an error or a skip, or yielded nothing."""

    def runtest(self):
        __tracebackhide__ = True
        if self.cases.collect_error is None:
            pytest.fail("%s yielded no cases" % self.name, pytrace=False)
        with _skips():
            got = self.cases.advance(self.index)     # raises again here, normally
        pytest.fail("%s: when collected it raised, after %d cases:\n%s\nwhen run it %s" % (
            self.name, self.index, self.cases.collect_error,
            "yielded another case" if got else "ended without error"), pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector, name, obj):
    if not (inspect.isgeneratorfunction(obj) and collector.istestfunction(obj, name)):
        return None
    cases = _Cases(name, obj)
    cases.collect()
    items, seen = [], {}
    for k, label in enumerate(cases.labels):
        seen[label] = seen.get(label, 0) + 1
        suffix = "" if seen[label] == 1 else "#%d" % seen[label]    # labels may repeat
        items.append(CaseItem.from_parent(collector, name="%s[%s%s]" % (name, label, suffix),
                                          cases=cases, index=k))
    if cases.collect_error is not None or not items:
        items.append(_Tail.from_parent(collector, name=name, cases=cases, index=len(cases.labels)))
    return items


def pytest_runtest_teardown(item, nextitem):
    """After the last selected case of a generator test, finish the generator (or just close it)."""
    __tracebackhide__ = True
    if isinstance(item, CaseItem) and getattr(nextitem, "cases", None) is not item.cases:
        if type(item) is CaseItem and item.index == len(item.cases.labels) - 1 \
                and item.cases.collect_error is None:
            item.cases.finish()
        else:
            item.cases.close()


# ---- rule 7 ------------------------------------------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session):
    """After pytest's own summary line (its terminal reporter prints that in its own wrapper of this hook)."""
    yield
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is None or session.config.option.collectonly:
        return
    n = {k: len(tr.stats.get(k, ())) for k in ("passed", "failed", "error", "skipped", "xfailed", "xpassed")}
    tr.write_line("%d passed, %d failed, %d skipped" % (
        n["passed"] + n["xpassed"], n["failed"] + n["error"], n["skipped"] + n["xfailed"]))
