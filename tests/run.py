"""Test driver for `make test`: runs every tests/test_*.py and prints `N passed, N failed`.

A test is a module-level function named test_*. It passes when it returns without raising.
A test may instead be a generator that yields (label, callable) pairs: each pair is then
counted as its own test, so a table of cases reports every failing case by name.
A test that needs something absent (torch, a compiler) raises Skip("why"); skips are
counted and listed, never silently passed.

Usage: python3 tests/run.py [-k substring] [module ...]
"""
import importlib.util
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from rnnlib import Skip  # noqa: E402


def load(path):
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv):
    pattern = None
    if len(argv) >= 2 and argv[0] == "-k":
        pattern, argv = argv[1], argv[2:]
    files = argv or sorted(
        os.path.join(HERE, f) for f in os.listdir(HERE)
        if f.startswith("test_") and f.endswith(".py"))
    passed = failed = skipped = 0
    failures = []
    for path in files:
        mod = load(path)
        t0 = time.time()
        n0 = passed + failed
        for fname in sorted(dir(mod)):
            fn = getattr(mod, fname)
            if not fname.startswith("test_") or not callable(fn):
                continue
            label0 = "%s::%s" % (mod.__name__, fname)
            if pattern and pattern not in label0:
                continue
            cases = []
            try:
                res = fn()
                if hasattr(res, "__next__"):
                    cases = res
                else:
                    passed += 1
            except Skip as e:
                skipped += 1
                print("SKIP %s: %s" % (label0, e))
            except Exception:
                failed += 1
                failures.append(label0)
                print("FAIL %s\n%s" % (label0, traceback.format_exc()))
            try:
                for label, case in cases:
                    full = "%s[%s]" % (label0, label)
                    try:
                        case()
                        passed += 1
                    except Skip as e:
                        skipped += 1
                        print("SKIP %s: %s" % (full, e))
                    except Exception:
                        failed += 1
                        failures.append(full)
                        print("FAIL %s\n%s" % (full, traceback.format_exc()))
            except Exception:
                failed += 1
                failures.append(label0 + " (case generator)")
                print("FAIL %s (case generator)\n%s" % (label0, traceback.format_exc()))
        print("%-28s %4d tests  %6.2fs" % (mod.__name__, passed + failed - n0, time.time() - t0))
    if failures:
        print("\nfailed:\n  " + "\n  ".join(failures))
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
