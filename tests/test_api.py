"""The SQL surface: the registered functions are pinned, only the entry point is exported,
rnn_info describes the model, rnn_version is constant, nothing is created on load."""
import json
import os
import sqlite3
import subprocess

import models
from rnnlib import ROOT, connect, one

EXPECTED = [
    # name, narg, builtin flags as pragma_function_list reports them
    ("rnn_cache_stats", 0, "s"),
    ("rnn_classify", 2, "s"),
    ("rnn_eval", 2, "s"),
    ("rnn_eval", 3, "s"),
    ("rnn_grad_internal", 2, "s"),
    ("rnn_hidden", -1, "w"),
    ("rnn_info", 1, "s"),
    ("rnn_init", 1, "s"),
    ("rnn_output", 2, "s"),
    ("rnn_params_internal", 2, "s"),
    ("rnn_predict", -1, "w"),
    ("rnn_scan_feed", -1, "s"),
    ("rnn_sequence", -1, "a"),
    ("rnn_state", -1, "w"),
    ("rnn_step", -1, "s"),
    ("rnn_version", 0, "s"),
]
MODULES = ["rnn_forecast", "rnn_scan", "rnn_steps", "rnn_train"]


def test_registered_functions_pinned():
    con = connect()
    rows = con.execute("SELECT name, narg, type FROM pragma_function_list WHERE name LIKE 'rnn%' "
                       "ORDER BY name, narg").fetchall()
    assert rows == EXPECTED, rows
    mods = [r[0] for r in con.execute("SELECT name FROM pragma_module_list WHERE name LIKE 'rnn%' ORDER BY 1")]
    assert mods == MODULES, mods


def test_function_flags():
    """DETERMINISTIC/INNOCUOUS/DIRECTONLY as the registration comments in ext/ say."""
    con = connect()
    flags = dict(con.execute("SELECT name, flags FROM pragma_function_list WHERE name LIKE 'rnn%'").fetchall())
    DETERMINISTIC, DIRECTONLY, INNOCUOUS = 0x800, 0x80000, 0x200000
    assert flags["rnn_version"] & DETERMINISTIC and flags["rnn_version"] & INNOCUOUS
    assert flags["rnn_sequence"] & DETERMINISTIC and flags["rnn_sequence"] & INNOCUOUS
    for f in ("rnn_predict", "rnn_hidden", "rnn_info", "rnn_eval", "rnn_classify", "rnn_state", "rnn_step",
              "rnn_output"):
        assert not flags[f] & (DETERMINISTIC | INNOCUOUS | DIRECTONLY), (f, hex(flags[f]))
    assert flags["rnn_cache_stats"] & DIRECTONLY
    assert flags["rnn_scan_feed"] & DIRECTONLY and not flags["rnn_scan_feed"] & (DETERMINISTIC | INNOCUOUS)
    assert flags["rnn_init"] & DETERMINISTIC and flags["rnn_init"] & INNOCUOUS
    assert flags["rnn_grad_internal"] & DIRECTONLY and flags["rnn_params_internal"] & DIRECTONLY


def test_only_entry_point_exported():
    out = subprocess.run(["nm", "-D", "--defined-only", os.path.join(ROOT, "rnn.so")],
                         capture_output=True, text=True, check=True).stdout
    names = sorted(line.split()[-1] for line in out.splitlines() if line.strip())
    assert names == ["sqlite3_rnn_init"], names


def test_load_creates_nothing():
    con = connect()
    assert one(con, "SELECT count(*) FROM sqlite_schema") == 0


def test_version():
    assert one(connect(), "SELECT rnn_version()") == "0.1.0"


def test_info():
    con = connect()
    blob = models.recurrent("lstm", 2, 5, layers=2, head=3, proj=3, prefix="rnn.",
                            metadata={"description": "caf\u00e9 model", "output_activation": "softmax",
                                      "owner": "ops"})
    info = json.loads(one(con, "SELECT rnn_info(?)", (blob,)))
    kernel = info.pop("kernel")
    assert kernel in ("scalar", "avx2", "avx512")
    assert info == {
        "cell": "lstm", "input_size": 2, "hidden_size": 5, "proj_size": 3, "num_layers": 2,
        "bidirectional": False, "bias": True, "output_size": 3, "head": True, "output_activation": "softmax",
        "readout": "last_output", "recurrent_prefix": "rnn.", "head_prefix": "fc.",
        "parameters": 4 * 5 * 2 + 4 * 5 * 3 + 2 * 20 + 3 * 5 + 4 * 5 * 3 * 2 + 2 * 20 + 3 * 5 + 3 * 3 + 3,
        "tensors": 12, "dtypes": {"F32": 12},
        "metadata": {"description": "caf\u00e9 model", "output_activation": "softmax", "owner": "ops"},
        "warnings": ["unknown metadata key 'owner' (ignored)"],
    }
    # json functions read it directly (JSON subtype / valid JSON text)
    assert one(con, "SELECT json_extract(rnn_info(?), '$.metadata.description')", (blob,)) == "caf\u00e9 model"


def test_info_seed_and_bidirectional():
    con = connect()
    info = json.loads(one(con, "SELECT rnn_info(?)", (models.seed_rnn(3, 4, 2, metadata={"hidden_activation": "tanh"}),)))
    assert (info["cell"], info["input_size"], info["hidden_size"], info["output_size"], info["hidden_activation"]) \
        == ("seed", 3, 4, 2, "tanh")
    info = json.loads(one(con, "SELECT rnn_info(?)", (models.recurrent("gru", 1, 3, layers=2, bidirectional=True),)))
    assert (info["bidirectional"], info["output_size"], info["num_layers"]) == (True, 6, 2)


def test_hidden_is_float32_blob():
    con = connect()
    blob = models.recurrent("gru", 1, 4, head=1)
    h = one(con, "SELECT rnn_hidden(?, 1.0)", (blob,))
    assert isinstance(h, bytes) and len(h) == 16


def test_multi_output_is_json_array():
    con = connect()
    blob = models.recurrent("gru", 1, 4, head=3, metadata={"output_activation": "softmax"})
    v = json.loads(one(con, "SELECT rnn_predict(?, 1.0)", (blob,)))
    assert len(v) == 3 and abs(sum(v) - 1.0) < 1e-6
    assert one(con, "SELECT json_array_length(rnn_predict(?, 1.0))", (blob,)) == 3


def test_trusted_schema_off():
    """README "Reliability and security": functions that read rnn_models are refused in views of an
    untrusted schema; pure ones are not."""
    con = connect()
    models.registry(con, m=models.recurrent("gru", 1, 3, head=1))
    con.execute("CREATE TABLE r(v)")
    con.execute("INSERT INTO r VALUES (1.0)")
    con.execute("CREATE VIEW scored AS SELECT rnn_predict('m', v) OVER () AS p FROM r")
    con.execute("CREATE VIEW packed AS SELECT rnn_sequence(1, v) AS p FROM r")
    assert isinstance(one(con, "SELECT p FROM scored"), float)
    con.execute("PRAGMA trusted_schema = OFF")
    try:
        con.execute("SELECT p FROM scored").fetchall()
        raise AssertionError("no error")
    except sqlite3.OperationalError as e:
        assert str(e) == "unsafe use of rnn_predict()"
    assert one(con, "SELECT length(p) FROM packed") == 4
