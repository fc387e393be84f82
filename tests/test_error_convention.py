"""One error convention in ext/ (ext/util.h, "Errors"; issue 11):
- every internal function that can fail returns an SQLite result code and records its message in the caller's
  rnn_err; no char buffers, no char ** out-messages, no private nomem/oom flags, no 0/1/2 returns;
- a caller that adds context prefixes the message it got (rnn_err_prefix), so nested messages read exactly as
  before: each layer's text, escaped once, a multi-byte character cut by a cap shown as \\xNN;
- the order of a sequence's errors (syntax, kind, emptiness, the limit, the first bad step) holds."""
import json
import os
import re
import struct

import models
import st
from rnnlib import ROOT, connect, error_of

EXT_DIR = os.path.join(ROOT, "ext")


def sources():
    for name in sorted(os.listdir(EXT_DIR)):
        if name.endswith((".c", ".h")):
            with open(os.path.join(EXT_DIR, name), encoding="utf-8") as f:
                yield name, f.read()


def test_convention_written_once_in_util_h():
    with open(os.path.join(EXT_DIR, "util.h"), encoding="utf-8") as f:
        text = f.read()
    assert "Errors: the one convention every ext/ file follows." in text
    for name in ("rnn_err_set", "rnn_err_nomem", "rnn_err_prefix", "rnn_err_take", "rnn_err_result", "rnn_err_vtab"):
        assert re.search(r"\b%s\(" % name, text), name


def test_loaders_take_an_rnn_err():
    """The three entry points that had their own conventions: json (0/1/2 + buffer), model and tokenizer (char **)."""
    want = {
        "json.h": r"int rnn_json_parse\(const char \*z, size_t n, rnn_json_doc \*doc, rnn_err \*err\);",
        "model.h": r"int rnn_model_load\(const unsigned char \*blob, size_t n, rnn_model \*\*out, rnn_err \*err\);",
        "tokenizer.h": r"int rnn_tokens_load\(rnn_model \*m, const char \*vocab, const char \*labels, "
                       r"const char \*unknown, rnn_err \*err\);",
    }
    text = dict(sources())
    for name, pattern in want.items():
        assert re.search(pattern, text[name]), name
    assert re.search(r"void rnn_json_reader_init\([^)]*rnn_err \*err\);", text["json.h"])


def test_no_other_error_convention_in_ext():
    """Message buffers, char ** messages and private out-of-memory flags are gone. The only char ** error
    parameters left are SQLite's own (xConnect's pzErr, sqlite3_rnn_init's pzErrMsg)."""
    bad = []
    for name, text in sources():
        for n, line in enumerate(text.splitlines(), 1):
            where = "%s:%d: %s" % (name, n, line.strip())
            if re.search(r"char \*\*(err|why|pzErr)\b", line) and "sqlite3_vtab **" not in line:
                bad.append(where)
            if re.search(r"char \*err, size_t", line) or re.search(r"char jerr\[", line):
                bad.append(where)
            if re.search(r"\b(int|->|\.)(\s*)(nomem|oom)\b", line):
                bad.append(where)
    assert not bad, "\n".join(bad)


def _dup_key_header(key):
    head = ('{"%s":1, "%s":2}' % (key, key)).encode()
    return struct.pack("<Q", len(head)) + head, len(('{"%s":1, "%s"' % (key, key)).encode())


def test_json_message_wrapped_by_two_callers():
    """json.c's message, prefixed by the loader, then by the registry: a 60-byte cap that cuts a character."""
    key = "a" + "\u00e9" * 40  # 81 bytes: the cap keeps 'a', 29 characters and the first byte of the 30th
    blob, at = _dup_key_header(key)
    inner = "safetensors header is not valid JSON: duplicate key 'a%s\\xC3' at byte %d" % ("\u00e9" * 29, at)
    con = connect()
    assert error_of(con, "SELECT rnn_info(?)", (blob,)) == "rnn_info(): invalid model: " + inner
    con.execute("CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL)")
    con.execute("INSERT INTO rnn_models VALUES ('m' || char(1), ?)", (blob,))
    assert error_of(con, "SELECT rnn_eval('m' || char(1), '[1]')") == "rnn_eval(): invalid model 'm\\x01': " + inner
    assert error_of(con, "SELECT * FROM rnn_steps('m' || char(1), '[1]')") == (
        "rnn_steps(): invalid model 'm\\x01': " + inner)


def test_metadata_json_errors_say_what_is_expected():
    """A metadata value that is not JSON: the loader's rule, not json.c's message (which is dropped)."""
    cases = [  # (inputs, outputs, metadata, message)
        (1, 1, {"vocab": "[\"a\", "}, "__metadata__ vocab must be a JSON array of distinct non-empty strings"),
        (1, 1, {"vocab": "[\"a\"]", "labels": "{"}, "__metadata__ labels must be a JSON array of strings"),
        (1, 1, {"input_mean": "[1,]"}, "__metadata__ input_mean must be a JSON array of 1 finite numbers, got '[1,]'"),
        (1, 1, {"output_names": "[\"x\""}, "__metadata__ output_names must be a JSON array of distinct non-empty "
                                          "strings"),
        (2, 1, {"vocab": "[\"a\", \"a\"]"}, "__metadata__ vocab has the token 'a' twice"),
    ]
    con = connect()
    for inputs, outputs, meta, want in cases:
        blob = models.seed_rnn(inputs, 2, outputs, metadata=dict(meta, cell="seed"))
        assert error_of(con, "SELECT rnn_info(?)", (blob,)) == "rnn_info(): invalid model: " + want, meta


def test_sequence_errors_keep_their_order():
    """Rule 5 of sequence.c: a bad step is reported only if the whole text parses."""
    con = connect()
    m = models.recurrent("gru", 2, 3)
    assert error_of(con, "SELECT rnn_eval(?, '[[1, 2], [1], [1, 2')", (m,)) == (
        "rnn_eval(): sequence is not valid JSON: expected ',' or ']' at byte 19")
    assert error_of(con, "SELECT rnn_eval(?, '[[1, 2], [1], [1, 2]]')", (m,)) == (
        "rnn_eval(): sequence step 1 has 1 feature, the model expects 2")
    assert error_of(con, "SELECT rnn_eval(?, '[[1, 2], [1, \"x\"]]')", (m,)) == (
        "rnn_eval(): sequence step 1 feature 2 is a string, expected a finite number")
    assert error_of(con, "SELECT rnn_eval(?, '{\"a\": 1, \"a\": 2}')", (m,)) == (
        "rnn_eval(): sequence is not valid JSON: duplicate key 'a' at byte 12")
    assert error_of(con, "SELECT rnn_eval(?, '[[1, 2], [1, 2]] x')", (m,)) == (
        "rnn_eval(): sequence is not valid JSON: trailing characters after JSON value at byte 17")


# ---- the files converted last: eval, tvf, window, state, poll and the bidirectional passes of cells ----------------

CONVERTED = ("eval.c", "tvf.c", "window.c", "state.c", "poll.c", "cells.c", "features.c", "sequence.c")
REPORTERS = re.compile(r"\b(sqlite3_result_error\w*|rnn_result_errorf|rnn_err_result|rnn_err_vtab)\(")


def functions(text):
    """(return type and name, parameter text, body) of each function defined at the top level of a C file."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(?!typedef|#|\s|/|\*|})([A-Za-z_][\w \*]*?)\b(\w+)\(", lines[i])
        if not m:
            i += 1
            continue
        head = lines[i]
        one_line = re.match(r"^[^(]*\((.*?)\)\s*\{(.*)\}\s*$", head)
        if one_line:  # void rnn_eval_func(...) { fn_eval(c, n, v); }
            yield (m.group(1).strip(), m.group(2)), one_line.group(1), one_line.group(2)
            i += 1
            continue
        j = i
        while not head.rstrip().endswith(("{", ";")) and j + 1 < len(lines):
            j += 1
            head += " " + lines[j].strip()
        if not head.rstrip().endswith("{"):
            i = j + 1
            continue
        k = j + 1
        while k < len(lines) and lines[k] != "}":
            k += 1
        params = head[head.index("(") + 1:head.rindex(")")]
        yield (m.group(1).strip(), m.group(2)), params, "\n".join(lines[j + 1:k])
        i = k + 1


def test_function_parser_sees_every_function():
    """The checks below rely on functions(): it finds eval.c's functions with their bodies."""
    text = dict(sources())["eval.c"]
    found = {name: (ret, params, body) for (ret, name), params, body in functions(text)}
    assert {"eval_floats", "eval_run", "eval_from", "eval_last", "fn_eval", "rnn_classify_func"} <= set(found)
    assert found["eval_last"][0] == "static int" and found["eval_last"][1].endswith("rnn_err *err")
    assert "rnn_seq_read" in found["eval_last"][2] and "fn_eval" in found["rnn_eval_func"][2]


def test_converted_files_return_codes():
    """No -1 / 0 / 1 results for errors or interruption in the files converted last: an error is its SQLite
    code (rnn_err_set and rnn_err_nomem return it), an interrupted call SQLITE_INTERRUPT from poll.c.
    window.c's win_compute answers yes/no (is the frame empty), which is no error."""
    yes_no = {("window.c", "win_compute")}
    bad = []
    for name, text in sources():
        if name not in CONVERTED:
            continue
        for (ret, fn), _, body in functions(text):
            if name == "sequence.c" and fn == "finite_as_f64" or (name, fn) in yes_no:
                continue
            if re.search(r"\breturn -1;", body) or (ret.endswith("int") and re.search(r"\breturn 1;", body)):
                bad.append("%s: %s" % (name, fn))
    assert not bad, "\n".join(bad)


def test_only_callbacks_report():
    """In every ext/ file but util.c (which defines the reporters), a function that sets an error on a context or
    into zErrMsg is an SQLite callback: it returns nothing (an SQL function's xFunc/xStep/xValue/xFinal, or a
    result_* helper making one's result), or it is a virtual table method, which takes the sqlite3_vtab or its
    cursor and returns the code. Everything below the boundary returns a code with the error in an rnn_err.
    rnn_resolve is the documented exception (util.h rule 5)."""
    allowed = {("registry.c", "rnn_resolve")}
    bad = []
    for name, text in sources():
        if not name.endswith(".c") or name == "util.c":
            continue
        for (ret, fn), params, body in functions(text):
            if not REPORTERS.search(body) or (name, fn) in allowed:
                continue
            vtab = re.match(r"\s*(sqlite3_vtab|sqlite3_vtab_cursor) \*", params) and ret.endswith("int")
            if ret.endswith("void") and "sqlite3_context *" in params or vtab:
                continue
            bad.append("%s: %s %s(%s)" % (name, ret, fn, params))
    assert not bad, "\n".join(bad)


def test_zerrmsg_set_only_by_rnn_err_vtab():
    """A virtual table's message goes through rnn_err_vtab (util.c), as every function's goes through rnn_err_set."""
    bad = ["%s: %s" % (name, line.strip()) for name, text in sources() if name != "util.c"
           for line in text.splitlines() if re.search(r"->zErrMsg\s*=[^=]", line)]
    assert not bad, "\n".join(bad)


def test_interruption_is_a_code():
    """The bidirectional passes hand back the tick's code (poll.c's: SQLITE_INTERRUPT), not a bare 1; poll.c's
    own reporters are gone (the callers report the rnn_err rnn_poll_err fills)."""
    text = dict(sources())
    assert "typedef int (*rnn_tick)(void *arg);" in text["cells.h"]
    assert not re.search(r"tick\(arg\)\) return 1;", text["cells.c"])
    for name, body in text.items():
        assert not re.search(r"\brnn_poll_(result|vtab)\b", body), name
    assert re.search(r"int rnn_poll_err\(const rnn_poll \*p, rnn_err \*err\);", text["poll.h"])


def test_stopped_call_reports_sqlite_interrupt():
    """Every long call stopped by a progress handler fails with SQLite's own code and text, whatever reports it
    (a function's context or a virtual table's xFilter / xNext)."""
    import sqlite3
    from test_longcalls import progress_cases, stop_at_call
    for label, sql, params in progress_cases():
        con = connect()
        stop_at_call(con, 200)
        try:
            con.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            assert (str(e), e.sqlite_errorcode, e.sqlite_errorname) == ("interrupted", 9, "SQLITE_INTERRUPT"), label
        else:
            raise AssertionError("no error: " + label)
