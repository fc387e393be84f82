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
