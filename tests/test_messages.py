"""Error messages as a contract (ext/util.c rnn_vmprintf, ext/rnn.c rules 2-4):
- every message is valid UTF-8 without control bytes, whatever bytes the user gave (a model name, a token, a
  JSON key, a metadata value, SQLite's own text): such bytes read as \\xNN, a NUL included, and Python raises
  sqlite3.OperationalError, never UnicodeDecodeError;
- an argument of the wrong type is named with its type ("got TEXT '24'");
- a torch.save or pickle file given as a model says what it is and how to convert it;
- loading refuses an SQLite older than the newest API the extension calls, naming both versions;
- the registration table keeps each function's flags."""
import io
import json
import os
import pickle
import re
import sqlite3
import struct
import subprocess
import sys
import zipfile

import models
import st
from rnnlib import EXT, ROOT, Skip, connect, have_torch

HERE = os.path.dirname(os.path.abspath(__file__))


def op_error(con, sql, params=()):
    """The message of the sqlite3.OperationalError a statement raises (any other outcome fails)."""
    try:
        con.execute(sql, params).fetchall()
    except sqlite3.OperationalError as e:
        return str(e)
    raise AssertionError("no error from: %s" % sql)


VOCAB_MODEL = models.seed_rnn(2, 3, 2, metadata={"vocab": json.dumps(["a", "b"]), "cell": "seed"})
IH_HH = {"weight_ih_l0": ("F32", [2, 1], [0.1, 0.2]), "weight_hh_l0": ("F32", [2, 2], [0.1] * 4)}


def small(metadata=None, **extra):
    t = dict(IH_HH)
    t.update(extra)
    return st.dumps(t, metadata)


def registry_con():
    con = connect()
    models.registry(con, m=models.recurrent("gru", 1, 2))
    return con


NO_MODEL = ("no model named %s in rnn_models: INSERT INTO rnn_models(name, model) VALUES (%s, <safetensors BLOB>)")
E_ACUTE_20 = "\u00e9" * 20  # 40 bytes: what a 40-byte cap keeps of 30 of them, never half of one
USER_BYTES = [
    ("name invalid UTF-8", "SELECT rnn_info(CAST(X'6DFF' AS TEXT))", (),
     "rnn_info(): " + NO_MODEL % ("'m\\xFF'", "'m\\xFF'")),
    ("name with NUL", "SELECT rnn_info('m' || char(0) || 'x')", (),
     "rnn_info(): " + NO_MODEL % ("'m\\x00x'", "'m\\x00x'")),
    ("name with newline and DEL", "SELECT rnn_eval('a' || char(10) || char(127), '[1]')", (),
     "rnn_eval(): " + NO_MODEL % ("'a\\x0A\\x7F'", "'a\\x0A\\x7F'")),
    ("name in a window", "SELECT rnn_predict(CAST(X'C0AF' AS TEXT), 1) OVER ()", (),
     "rnn_predict(): " + NO_MODEL % ("'\\xC0\\xAF'", "'\\xC0\\xAF'")),
    ("name in a table-valued function", "SELECT * FROM rnn_steps(CAST(X'EDA080' AS TEXT), '[1]')", (),
     "rnn_steps(): " + NO_MODEL % ("'\\xED\\xA0\\x80'", "'\\xED\\xA0\\x80'")),
    ("valid UTF-8 kept", "SELECT rnn_info('caf\u00e9 \U0001F600')", (),
     "rnn_info(): " + NO_MODEL % ("'caf\u00e9 \U0001F600'", "'caf\u00e9 \U0001F600'")),
    ("token invalid UTF-8", "SELECT rnn_eval(?, CAST(X'61FF62' AS TEXT))", (VOCAB_MODEL,),
     "rnn_eval(): '\\xFF' at character 2 of the text is not in the model's vocab"),
    ("token NUL", "SELECT rnn_classify(?, 'a' || char(0))", (VOCAB_MODEL,),
     "rnn_classify(): '\\x00' at character 2 of the text is not in the model's vocab"),
    ("row token invalid UTF-8", "SELECT rnn_predict(?, CAST(X'FE' AS TEXT)) OVER ()", (VOCAB_MODEL,),
     "rnn_predict(): argument 2 '\\xFE' is not a token of the model's vocab"),
    ("row token with NUL", "SELECT rnn_hidden(?, 'x' || char(0) || 'y') OVER ()", (VOCAB_MODEL,),
     "rnn_hidden(): argument 2 'x\\x00y' is not a token of the model's vocab"),
    ("row token cut at 40 bytes on a character boundary", "SELECT rnn_predict(?, ?) OVER ()",
     (VOCAB_MODEL, "\u00e9" * 30), "rnn_predict(): argument 2 '%s' is not a token of the model's vocab" % E_ACUTE_20),
    ("JSON key (tensor name) with a control character", "SELECT rnn_info(?)",
     (small(**{"x\x01y": ("F32", [1], [0.0])}),),
     "rnn_info(): invalid model: tensor 'x\\x01y' is not used by this rnn_tanh model (recurrent prefix ''): "
     "refusing to ignore part of a state_dict"),
    ("duplicate JSON key with a control character", "SELECT rnn_info(?)",
     (struct.pack("<Q", 26) + b'{"a\\u0001":1, "a\\u0001":2}',),
     "rnn_info(): invalid model: safetensors header is not valid JSON: duplicate key 'a\\x01' at byte 23"),
    ("metadata value with a newline", "SELECT rnn_info(?)", (small({"cell": "ls\ntm"}),),
     "rnn_info(): invalid model: __metadata__ cell is 'ls\\x0Atm', expected one of rnn_tanh, rnn_relu, lstm, gru, "
     "seed"),
    ("metadata value cut at 40 bytes on a character boundary", "SELECT rnn_info(?)",
     (small({"input_mean": "[" + "\u00e9" * 30 + "]"}),),
     "rnn_info(): invalid model: __metadata__ input_mean must be a JSON array of 1 finite numbers, got '[%s'"
     % ("\u00e9" * 19)),
    ("metadata prefix with a tab", "SELECT rnn_info(?)", (small({"recurrent_prefix": "a\tb"}),),
     "rnn_info(): invalid model: __metadata__ recurrent_prefix 'a\\x09b' must be empty or end with '.'"),
    ("horizon TEXT invalid UTF-8", "SELECT * FROM rnn_forecast(?, '[1]', CAST(X'32FF' AS TEXT))",
     (models.recurrent("gru", 1, 2, head=1),),
     "rnn_forecast(): horizon must be an INTEGER from 1 to 1000000, got TEXT '2\\xFF'"),
]


def test_user_bytes_are_escaped():
    """Each case raised UnicodeDecodeError (or cut the text at a NUL) before: now exact, escaped text."""
    for label, sql, params, want in USER_BYTES:
        def case(sql=sql, params=params, want=want):
            got = op_error(registry_con(), sql, params)
            assert got == want, (got, want)
        yield label, case


def test_registry_row_name_escaped():
    """The row name in registry messages (a bad BLOB, a non-BLOB model) and SQLite's own message text."""
    con = connect()
    con.execute("CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL)")
    con.execute("INSERT INTO rnn_models VALUES (CAST(X'FF' AS TEXT), X'00'), ('t' || char(9), 'text')")
    assert op_error(con, "SELECT rnn_info(CAST(X'FF' AS TEXT))") == (
        "rnn_info(): invalid model '\\xFF': BLOB is 1 bytes, too short for a safetensors header")
    assert op_error(con, "SELECT rnn_info('t' || char(9))") == (
        "rnn_info(): rnn_models.model of 't\\x09' is TEXT, expected a safetensors BLOB")
    con = connect()
    con.execute("CREATE TABLE base(name, m)")
    con.execute('CREATE VIEW rnn_models AS SELECT name, "f\x01"(m) AS model FROM base')
    assert op_error(con, "SELECT rnn_info('q')") == (
        "rnn_info(): cannot read rnn_models(name, model): no such function: f\\x01")


def test_horizon_names_the_type():
    """'24' as TEXT read like the number 24 in the old message."""
    con = connect()
    m = models.recurrent("gru", 1, 2, head=1)
    want = "rnn_forecast(): horizon must be an INTEGER from 1 to 1000000, got "
    for arg, got in [("'24'", "TEXT '24'"), ("' 7'", "TEXT ' 7'"), ("NULL", "NULL"), ("X'18'", "BLOB"),
                     ("24.0", "REAL 24.0"), ("0", "INTEGER 0"), ("-3", "INTEGER -3"),
                     ("'" + "9" * 50 + "'", "TEXT '" + "9" * 40 + "'")]:
        assert op_error(con, "SELECT * FROM rnn_forecast(?, '[1]', %s)" % arg, (m,)) == want + got, arg
    assert len(con.execute("SELECT * FROM rnn_forecast(?, '[1]', 24)", (m,)).fetchall()) == 24


CONVERT = ("not safetensors: convert the module with sqlite_rnn.to_blob(module) (python/sqlite_rnn.py) or save its "
           "state_dict with safetensors.torch.save_file")
ZIP = "rnn_info(): invalid model: BLOB is a zip archive (what torch.save writes), " + CONVERT
PICKLE = ("rnn_info(): invalid model: BLOB is a Python pickle (pickle.dump, or torch.save in its legacy format), "
          + CONVERT)


def zip_bytes():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", b"x")
    return buf.getvalue()


def test_foreign_model_formats():
    con = connect()
    assert op_error(con, "SELECT rnn_info(?)", (zip_bytes(),)) == ZIP
    assert op_error(con, "SELECT rnn_info(X'504B0304')") == ZIP
    for proto in (2, 3, 4, 5):
        assert op_error(con, "SELECT rnn_info(?)", (pickle.dumps({"w": [1.0]}, protocol=proto),)) == PICKLE, proto
    assert op_error(con, "SELECT rnn_eval(X'8002', '[1]')") == PICKLE.replace("rnn_info", "rnn_eval")
    # not a pickle: protocol byte out of range, or a real header after it
    assert op_error(con, "SELECT rnn_info(X'8001')") == (
        "rnn_info(): invalid model: BLOB is 2 bytes, too short for a safetensors header")


def test_safetensors_that_starts_like_a_pickle_loads():
    """A header of 0x280 bytes makes the BLOB start 80 02, as a pickle does: '{' at byte 8 says safetensors."""
    ok = small()
    hlen = struct.unpack("<Q", ok[:8])[0]
    header = ok[8:8 + hlen].rstrip(b" ")
    padded = struct.pack("<Q", 0x280) + header + b" " * (0x280 - len(header)) + ok[8 + hlen:]
    assert padded[:2] == b"\x80\x02"
    con = connect()
    assert json.loads(con.execute("SELECT rnn_info(?)", (padded,)).fetchone()[0])["hidden_size"] == 2


def test_real_torch_save_file():
    if not have_torch():
        raise Skip("python3-torch not installed")
    import torch
    buf = io.BytesIO()
    torch.save(torch.nn.GRU(1, 2).state_dict(), buf)
    assert op_error(connect(), "SELECT rnn_info(?)", (buf.getvalue(),)) == ZIP
    buf = io.BytesIO()
    torch.save(torch.nn.GRU(1, 2).state_dict(), buf, _use_new_zipfile_serialization=False)
    assert op_error(connect(), "SELECT rnn_info(?)", (buf.getvalue(),)) == PICKLE


def api_versions():
    """{sqlite3_name: (major, minor, patch)} from the installed sqlite3ext.h's "Version x.y.z and later" notes."""
    text = open("/usr/include/sqlite3ext.h").read()
    text = text[re.search(r"#define sqlite3_\w+\s+sqlite3_api->", text).start():]  # the macros, after the struct
    ver, out = (3, 0, 0), {}
    for line in text.split("\n"):
        m = re.search(r"Version (\d+)\.(\d+)\.(\d+) and later", line)
        if m:
            ver = tuple(int(x) for x in m.groups())
        m = re.match(r"#define (sqlite3_\w+)\s+sqlite3_api->", line)
        if m:
            out[m.group(1)] = ver
    return out


# Flags an older SQLite silently drops (sqlite3CreateFunc keeps only the bits it knows): the first
# version that honours each, from the SQLite release notes.
FLAG_VERSIONS = {"SQLITE_DIRECTONLY": (3, 30, 0), "SQLITE_SUBTYPE": (3, 30, 0), "SQLITE_INNOCUOUS": (3, 31, 0),
                 "SQLITE_VTAB_INNOCUOUS": (3, 31, 0), "SQLITE_VTAB_DIRECTONLY": (3, 31, 0)}


def min_sqlite():
    src = open(os.path.join(ROOT, "ext", "rnn.c")).read()
    n = int(re.search(r"#define RNN_MIN_SQLITE (\d+)", src).group(1))
    text = re.search(r'#define RNN_MIN_SQLITE_TEXT "([\d.]+)"', src).group(1)
    return n, text


def test_min_sqlite_covers_every_api_called():
    """The load check's version is the newest of the APIs and flags ext/ uses (3.25 let 3.39's sqlite3_db_name
    through, before registry.c stopped calling it)."""
    if not os.path.exists("/usr/include/sqlite3ext.h"):
        raise Skip("no /usr/include/sqlite3ext.h (libsqlite3-dev)")
    versions = api_versions()
    used = {}
    for f in sorted(os.listdir(os.path.join(ROOT, "ext"))):
        if f.endswith((".c", ".h")):
            src = re.sub(r"/\*.*?\*/", "", open(os.path.join(ROOT, "ext", f)).read(), flags=re.S)
            for name in re.findall(r"\b(sqlite3_\w+)\s*\(", src):
                if name in versions:
                    used.setdefault(name, versions[name])
            for name in re.findall(r"\b(SQLITE_[A-Z_]+)\b", src):
                if name in FLAG_VERSIONS:
                    used.setdefault(name, FLAG_VERSIONS[name])
    newest = max(used.values())
    n, text = min_sqlite()
    newest_calls = sorted(used.items(), key=lambda x: x[1])[-3:]
    assert n == newest[0] * 1000000 + newest[1] * 1000 + newest[2], (n, newest, newest_calls)
    assert text == "%d.%d.%d" % newest, text


FAKE_HOST = r'''
import ctypes, re, sys
ext, number, text = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
hdr = open("/usr/include/sqlite3ext.h").read()
body = hdr[hdr.index("struct sqlite3_api_routines {"):]
body = body[body.index("{") + 1:body.index("\n};")]
members = [re.search(r"\(\s*\*\s*(\w+)\s*\)", m).group(1) for m in body.split(";") if m.strip()]
lib = ctypes.CDLL("libsqlite3.so.0")
table = (ctypes.c_void_p * len(members))()  # every other entry NULL: any other call would crash
version_number = ctypes.CFUNCTYPE(ctypes.c_int)(lambda: number)
buf = ctypes.create_string_buffer(text)
version_text = ctypes.CFUNCTYPE(ctypes.c_void_p)(lambda: ctypes.addressof(buf))
table[members.index("libversion_number")] = ctypes.cast(version_number, ctypes.c_void_p)
table[members.index("libversion")] = ctypes.cast(version_text, ctypes.c_void_p)
table[members.index("mprintf")] = ctypes.cast(lib.sqlite3_mprintf, ctypes.c_void_p)
so = ctypes.CDLL(ext)
err = ctypes.c_void_p()
rc = so.sqlite3_rnn_init(None, ctypes.byref(err), table)
print(rc, ctypes.string_at(err.value).decode() if err.value else None)
'''


def test_old_sqlite_refused_at_load():
    """sqlite3_rnn_init called by a fake host (its own process) whose API table says 3.38.5 or 3.25.0 and
    holds nothing else: the check must come before any other call and name both versions."""
    if not os.path.exists("/usr/include/sqlite3ext.h"):
        raise Skip("no /usr/include/sqlite3ext.h (libsqlite3-dev)")
    so = EXT if EXT.endswith(".so") else EXT + ".so"
    n, text = min_sqlite()
    major, minor, patch = n // 1000000, n // 1000 % 1000, n % 1000
    before = (major, minor - 1, 5) if patch == 0 else (major, minor, patch - 1)
    for number, found in [(before[0] * 1000000 + before[1] * 1000 + before[2], "%d.%d.%d" % before),
                          (3025000, "3.25.0")]:
        out = subprocess.run([sys.executable, "-c", FAKE_HOST, so, str(number), found], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout == "1 sqlite-rnn needs SQLite %s or newer, but this is SQLite %s\n" % (text, found), \
            out.stdout


# name -> (type, narg, flags as pragma_function_list shows them on this SQLite): deterministic 0x800,
# directonly 0x80000, innocuous 0x200000 (SQLITE_RESULT_SUBTYPE is masked off before 3.45)
FLAGS = {
    "rnn_version": ("s", 0, 0x800 | 0x200000),
    "rnn_info": ("s", 1, 0),
    "rnn_cache_stats": ("s", 0, 0x80000),
    "rnn_predict": ("w", -1, 0),
    "rnn_hidden": ("w", -1, 0),
    "rnn_eval": ("s", 2, 0),
    "rnn_classify": ("s", 2, 0),
    "rnn_sequence": ("a", -1, 0x800 | 0x200000),
    "rnn_state": ("w", -1, 0),
    "rnn_step": ("s", -1, 0),
    "rnn_output": ("s", 2, 0),
    "rnn_scan_feed": ("s", -1, 0x80000),
    "rnn_init": ("s", 1, 0x800 | 0x200000),
    "rnn_grad_internal": ("s", 2, 0x80000),
    "rnn_params_internal": ("s", 2, 0x80000),
}


def test_registration_table():
    """One table registers every name with the flags it had before the table existed."""
    con = connect()
    try:
        rows = con.execute("SELECT name, type, narg, flags & 0x280800 FROM pragma_function_list "
                           "WHERE name LIKE 'rnn\\_%' ESCAPE '\\'").fetchall()
    except sqlite3.OperationalError:
        raise Skip("this SQLite has no pragma_function_list")
    assert {r[0]: tuple(r[1:]) for r in rows} == FLAGS, rows
    mods = [r[0] for r in con.execute("SELECT name FROM pragma_module_list WHERE name LIKE 'rnn%' ORDER BY 1")]
    assert mods == ["rnn_forecast", "rnn_scan", "rnn_steps", "rnn_train"], mods
