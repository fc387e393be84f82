"""Sequence input (ext/sequence.c, features.c, seqagg.c, tokenizer.c, json.c, f32.h): tokenising in time linear in the
text, memory bounded by the limits rather than by the input length, one sequence limit with one message, float32
range, one-token vocabs, hints for TEXT numbers and float64 BLOBs, several ordering keys in rnn_sequence.

Memory cases run in a subprocess and assert a bound on the growth of its peak RSS (resource.getrusage) during one
statement; the figures before and after the change are in each docstring."""
import json
import math
import os
import random
import struct
import subprocess
import sys

import models
import st
from rnnlib import EXT, connect, error_of, f32_blob, f32_list, one

FLT_MAX = struct.unpack("<f", struct.pack("<I", 0x7F7FFFFF))[0]

# The subprocess: builds the input (`setup`, Python that defines `arg` and `model`), then runs `sql` once and prints
# the error text or the result, and how much the peak RSS grew (MiB) while the statement ran.
_CHILD = r"""
import json, resource, sqlite3, sys
sys.path.insert(0, %(tests)r)
import models
import st
%(setup)s
con = sqlite3.connect(":memory:")
con.enable_load_extension(True)
con.load_extension(%(ext)r)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    out = repr(con.execute(%(sql)r, (model, arg)).fetchall())
except sqlite3.Error as e:
    out = str(e)
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024.0
print(json.dumps([out, grown]))
"""


def run_child(setup, sql, cpu_seconds=None):
    """(result or error text, peak RSS growth in MiB) of one statement in a fresh process."""
    code = _CHILD % {"tests": os.path.dirname(os.path.abspath(__file__)), "setup": setup, "ext": EXT, "sql": sql}
    pre = None
    if cpu_seconds:
        import resource

        def pre():
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=pre)
    assert p.returncode == 0, "child failed (%d): %s" % (p.returncode, p.stderr[-2000:])
    out, grown = json.loads(p.stdout)
    return out, grown


def growth_over_binding(setup, sql):
    """(result, MiB the statement's peak RSS grew beyond what binding the same arguments costs)."""
    out, grown = run_child(setup, sql)
    _, bind = run_child(setup, "SELECT length(?), length(?)")
    return out, grown - bind


def greedy(vocab, text, unknown=None):
    """The reference split: at each position the longest token; an unknown character stands in as `unknown`."""
    out, i, longest = [], 0, max(len(t) for t in vocab)
    while i < len(text):
        for n in range(min(longest, len(text) - i), 0, -1):
            if text[i:i + n] in vocab:
                out.append(text[i:i + n])
                i += n
                break
        else:
            if unknown is None:
                return None
            out.append(unknown)
            i += 1
    return out


def test_tokenizer_matches_greedy_reference():
    """Random vocabs with shared prefixes and multi-byte characters: rnn_steps echoes exactly the tokens of the
    greedy longest-match split, with and without unknown_token."""
    rng = random.Random(11)
    alpha = ["a", "b", "\u00e9", "\u20ac", "ab"]
    con = connect()
    for it in range(300):
        vocab = set()
        while len(vocab) < rng.randint(2, 9):
            vocab.add("".join(rng.choice(alpha) for _ in range(rng.randint(1, 6))))
        vocab = sorted(vocab)
        unknown = rng.choice(vocab) if it % 2 else None
        md = {"vocab": json.dumps(vocab)}
        if unknown:
            md["unknown_token"] = unknown
        m = models.recurrent("rnn_tanh", len(vocab), 2, metadata=md, seed=it)
        text = "".join(rng.choice(alpha) for _ in range(rng.randint(1, 40)))
        want = greedy(vocab, text, unknown)
        if want is None:
            assert "is not in the model's vocab" in error_of(con, "SELECT * FROM rnn_steps(?, ?)", (m, text))
        else:
            got = [r[0] for r in con.execute("SELECT input FROM rnn_steps(?, ?) ORDER BY step", (m, text))]
            assert got == want, (vocab, unknown, text, got, want)


def test_tokenizer_long_tokens_linear():
    """A 4000-byte token in the vocab and 40,000 characters of text: the split costs text x longest token, not
    text x longest^2 (before: 3.2e11 byte steps, minutes; the 1000-byte / 20,000-character case took 11 s; after:
    0.2 s). Run under a 30 s CPU limit, so the quadratic version is killed."""
    setup = ("model = models.recurrent('rnn_tanh', 2, 2, head=1, metadata={'vocab': json.dumps(['a', 'b' * 4000])})\n"
             "arg = 'a' * 40000 + 'b' * 4000")
    out, _ = run_child(setup, "SELECT count(*), sum(input = 'a') FROM rnn_steps(?, ?)", cpu_seconds=30)
    assert out == "[(40001, 40000)]"


def test_json_sequence_memory_bounded():
    """A 40 MB JSON sequence of 20 steps of 999,999 numbers, refused for a one-feature model: the old parser built
    a 48-byte node per value before any check (peak RSS +956 MiB during the statement); the streaming reader keeps
    only values (+39 MiB, what binding the text costs, plus under 1 MiB)."""
    setup = ("model = models.recurrent('gru', 1, 2, head=1)\n"
             "step = '[' + '1,' * 999998 + '1]'\n"
             "arg = '[' + ','.join([step] * 20) + ']'")
    out, grown = growth_over_binding(setup, "SELECT rnn_eval(?, ?)")
    assert out == "rnn_eval(): sequence step 0 has 999999 features, the model expects 1"
    assert grown < 20, grown


def test_json_sequence_limit_is_the_documented_one():
    """JSON sequences were capped at 1,000,000 items ('not valid JSON: too many items in one array'); the limit is
    RNN_MAX_SEQ_VALUES (2^25 values) with the same message as every other encoding."""
    con = connect()
    m = models.recurrent("gru", 1, 2, head=1)
    xs = [((i * 37) % 101) / 50.0 for i in range(1500000)]
    text = "[" + ",".join("%r" % x for x in xs) + "]"
    assert one(con, "SELECT rnn_eval(?, ?) = rnn_eval(?, ?)", (m, text, m, f32_blob(xs))) == 1
    m2 = models.recurrent("gru", 2, 2, head=1)
    assert error_of(con, "SELECT rnn_eval(?, ?)", (m2, "[" + ",".join(["[0,1]"] * (2 ** 24 + 1)) + "]")) == (
        "rnn_eval(): sequence has 16777217 steps of 2 values, more than the limit of 33554432 values")


def test_rnn_sequence_limit_message():
    """rnn_sequence's limit is the sequence limit with the same message ('more than 33554432 values' before)."""
    con = connect()
    assert error_of(con, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 4194305) "
                         "SELECT rnn_sequence(i, 1, 2, 3, 4, 5, 6, 7, 8) FROM c") == (
        "rnn_sequence(): sequence has 4194305 steps of 8 values, more than the limit of 33554432 values")


def test_json_errors_keep_their_order():
    """Streaming keeps the old order of errors: syntax anywhere first, then the kind, emptiness, the limit, then the
    first bad step; values inside a step are checked with the same grammar (duplicate keys too)."""
    con = connect()
    m1, m3 = models.recurrent("gru", 1, 2, head=1), models.recurrent("gru", 3, 2, head=1)
    cases = [
        (m1, '["a", 1, x]', "rnn_eval(): sequence is not valid JSON: unexpected character at byte 9"),
        (m1, '[[1,2], [{"a":1,"a":2}]]', "rnn_eval(): sequence is not valid JSON: duplicate key 'a' at byte 19"),
        (m1, '[1, [2]] 3', "rnn_eval(): sequence is not valid JSON: trailing characters after JSON value at byte 9"),
        (m1, '[1,]', "rnn_eval(): sequence is not valid JSON: unexpected character at byte 3"),
        (m1, '[1 2]', "rnn_eval(): sequence is not valid JSON: expected ',' or ']' at byte 3"),
        (m1, "[" * 17 + "]" * 17, "rnn_eval(): sequence is not valid JSON: nesting too deep at byte 16"),
        (m1, '{"a": [1]}', "rnn_eval(): sequence must be a JSON array, got an object"),
        (m3, '[[1,"a"], [1,2,3]]', "rnn_eval(): sequence step 0 has 2 features, the model expects 3"),
        (m3, '[[1,[2],"a"]]', "rnn_eval(): sequence step 0 feature 2 is an array, expected a finite number"),
        (m3, '[[1,2,3], {}]', "rnn_eval(): sequence step 1 is an object, expected a number or an array"),
    ]
    for m, text, msg in cases:
        assert error_of(con, "SELECT rnn_eval(?, ?)", (m, text)) == msg, text


def test_safetensors_header_memory_bounded():
    """A 60 MB safetensors header of 30 arrays of 999,999 numbers: the parser holds at most 262,144 values (12 MiB
    of nodes), so it is refused early (peak RSS before: +1375 MiB; after: +14 MiB)."""
    setup = ("import struct\n"
             "row = b'[' + b'1,' * 999998 + b'1]'\n"
             "h = b'{\"a\":[' + b','.join([row] * 30) + b']}'\n"
             "model = struct.pack('<Q', len(h)) + h\n"
             "arg = None\n"
             "del h")
    out, grown = growth_over_binding(setup, "SELECT rnn_info(?) IS ?")
    assert out == "rnn_info(): invalid model: safetensors header is not valid JSON: more than 262144 values at byte " \
                  "524287"
    assert grown < 40, grown


def test_text_sequence_memory_bounded():
    """'A' x 10^8 for a two-token vocab: the tokens are counted before anything is allocated, so the limit's
    message comes with no memory beyond binding the text (peak RSS before: +573 MiB; after: +191 MiB, the same as
    SELECT length(?) of that text)."""
    setup = ("model = models.recurrent('gru', 2, 2, head=1, metadata={'vocab': json.dumps(['A', 'B'])})\n"
             "arg = 'A' * 100000000")
    out, grown = growth_over_binding(setup, "SELECT rnn_eval(?, ?)")
    assert out == "rnn_eval(): sequence has 100000000 steps of 2 values, more than the limit of 33554432 values"
    assert grown < 20, grown


def test_float32_max_is_finite():
    """3.4028235e+38 (numpy's and torch's FLT_MAX) and 3.40282347e+38 (our %.9g) round to FLT_MAX: accepted in
    JSON sequences, window rows, rnn_sequence, metadata arrays and F64 weights; 3.4028236e+38 rounds to infinity
    and is refused, as NaN is."""
    con = connect()
    m1 = models.recurrent("gru", 1, 2, head=1)
    ref = f32_blob([FLT_MAX])
    for text in ("3.4028235e+38", "3.40282347e+38", "340282356779733623858607532500980858880"):
        assert one(con, "SELECT rnn_eval(?, ?) IS rnn_eval(?, ?)", (m1, "[%s]" % text, m1, ref)) == 1, text
        assert one(con, "SELECT rnn_eval(?, ?) IS rnn_eval(?, ?)", (m1, "[[-%s]]" % text, m1, f32_blob([-FLT_MAX])))
        assert one(con, "SELECT rnn_predict(?, %s) OVER () IS rnn_eval(?, ?)" % text, (m1, m1, ref)) == 1
        assert one(con, "SELECT rnn_sequence(1, %s)" % text) == ref
        m = models.recurrent("gru", 1, 2, head=1, metadata={"input_mean": "[%s]" % text})
        assert json.loads(one(con, "SELECT rnn_info(?)", (m,)))["input_size"] == 1
    assert error_of(con, "SELECT rnn_eval(?, '[3.4028236e+38]')", (m1,)) == (
        "rnn_eval(): sequence step 0 is not a finite float32 number")
    assert error_of(con, "SELECT rnn_predict(?, 3.4028236e+38) OVER ()", (m1,)) == (
        "rnn_predict(): argument 2 (feature 1) is 3.4028235999999999e+38, expected a finite float32 number")
    # the midpoint between FLT_MAX and 2^128 rounds to even, which is infinity
    mid = "340282356779733661637539395458142568448"
    assert error_of(con, "SELECT rnn_sequence(1, %s)" % mid).startswith("rnn_sequence(): argument 2 (feature 1) is ")
    tensors = {"weight_ih_l0": ("F64", [1, 1], [3.4028235e38]), "weight_hh_l0": ("F64", [1, 1], [0.5])}
    assert json.loads(one(con, "SELECT rnn_info(?)", (st.dumps(tensors),)))["cell"] == "rnn_tanh"
    tensors["weight_hh_l0"] = ("F64", [1, 1], [3.4028236e38])
    assert error_of(con, "SELECT rnn_info(?)", (st.dumps(tensors),)) == (
        "rnn_info(): invalid model: tensor 'weight_hh_l0' has a NaN, infinite or out-of-range value at index 0")


def test_one_token_vocab_rows_are_tokens():
    """A vocab model of input size 1: a window row is a token or a token index, as for every other vocab size, so
    rnn_predict(m, 'a') and rnn_predict(m, 0) equal rnn_eval(m, 'a') (before: 'a' was refused as TEXT and 0 was the
    feature value 0.0)."""
    con = connect()
    m = models.recurrent("gru", 1, 3, head=2, metadata={"vocab": '["a"]'})
    want = one(con, "SELECT rnn_eval(?, 'aa')", (m,))
    con.execute("CREATE TABLE s(t INTEGER PRIMARY KEY, tok, idx)")
    con.executemany("INSERT INTO s VALUES (?, 'a', 0)", [(1,), (2,)])
    assert one(con, "SELECT rnn_predict(?, tok) FROM s", (m,)) == want
    assert one(con, "SELECT rnn_predict(?, idx) FROM s", (m,)) == want
    assert one(con, "SELECT rnn_hidden(?, tok) FROM s", (m,)) == one(con, "SELECT rnn_hidden(?, idx) FROM s", (m,))
    assert error_of(con, "SELECT rnn_predict(?, 1) OVER ()", (m,)) == (
        "rnn_predict(): argument 2 is token index 1, outside 0..0")
    assert error_of(con, "SELECT rnn_predict(?, 0.0) OVER ()", (m,)) == (
        "rnn_predict(): argument 2 is REAL, expected a token (TEXT) or a token index (INTEGER) of the model's vocab")


def test_text_number_feature_hint():
    """A feature stored as TEXT that reads as a number (what .import --csv makes) is refused with a hint to CAST it,
    in rnn_predict, rnn_hidden and rnn_sequence; other TEXT keeps the plain message."""
    con = connect()
    m = models.recurrent("gru", 2, 2, head=1)
    con.execute("CREATE TABLE csv(t TEXT, a TEXT, b TEXT)")
    con.execute("INSERT INTO csv VALUES ('1', '0.5', ' 2e3 ')")
    hint = "expected a number: numbers imported as TEXT (e.g. by .import --csv) need CAST(... AS REAL)"
    assert error_of(con, "SELECT rnn_predict(?, CAST(a AS REAL), b) OVER () FROM csv", (m,)) == (
        "rnn_predict(): argument 3 (feature 2) is TEXT ' 2e3 ', " + hint)
    assert error_of(con, "SELECT rnn_hidden(?, a, 1) OVER () FROM csv", (m,)) == (
        "rnn_hidden(): argument 2 (feature 1) is TEXT '0.5', " + hint)
    assert error_of(con, "SELECT rnn_sequence(t, a) FROM csv") == (
        "rnn_sequence(): argument 2 (feature 1) is TEXT '0.5', " + hint)
    assert error_of(con, "SELECT rnn_predict(?, 'abc', 1) OVER ()", (m,)) == (
        "rnn_predict(): argument 2 (feature 1) is TEXT, expected a number")
    assert one(con, "SELECT rnn_predict(?, CAST(a AS REAL), CAST(b AS REAL)) OVER () FROM csv", (m,)) == one(
        con, "SELECT rnn_eval(?, '[[0.5, 2000]]')", (m,))


def test_float64_blob_hint():
    """A float64 BLOB (numpy's default dtype) where it gives itself away: a length that fits no float32 shape, or a
    word that is not a finite float32 while the whole BLOB reads as finite float64 values. The message says how to
    pass float32."""
    con = connect()
    m1, m3 = models.recurrent("gru", 1, 2, head=1), models.recurrent("gru", 3, 2, head=1)
    x = struct.unpack("<d", struct.pack("<Q", 0x40360851FFC00000))[0]   # 22.03..., low word a float32 NaN
    assert error_of(con, "SELECT rnn_eval(?, ?)", (m1, struct.pack("<2d", 1.5, x))) == (
        "rnn_eval(): sequence step 2 feature 1 is not finite: it reads as float64 values (numpy's default); pass "
        "float32, e.g. sqlite_rnn.sequence(x) or x.astype('<f4').tobytes()")
    assert error_of(con, "SELECT rnn_eval(?, ?)", (m3, struct.pack("<2d", 1.5, 2.5))) == (
        "rnn_eval(): sequence BLOB has 16 bytes, not a multiple of 12 (3 float32 features per step); float64 "
        "values (numpy's default) take 8 bytes each: pass float32, e.g. sqlite_rnn.sequence(x) or "
        "x.astype('<f4').tobytes()")
    assert error_of(con, "SELECT rnn_eval(?, x'0000807f')", (m1,)) == (
        "rnn_eval(): sequence step 0 feature 1 is not finite")


def test_rnn_sequence_several_keys():
    """rnn_sequence(json_array(year, quarter), x) orders rows by the keys element by element (numbers numerically,
    so quarter 10 after 9; text by bytes; a shorter array first), ties by the features; a row with a null key
    element is skipped. Only a value with SQLite's JSON subtype is read as keys: a JSON text from a table (or
    through a subquery, which drops subtypes) is an ordinary TEXT key unless wrapped in json()."""
    con = connect()
    con.execute("CREATE TABLE q(year, quarter, x)")
    rows = [(y, qn, float(y * 100 + qn)) for y in (2019, 2020, 2021) for qn in (1, 2, 9, 10, 11)]
    random.Random(3).shuffle(rows)
    con.executemany("INSERT INTO q VALUES (?, ?, ?)", rows + [(2020, None, 1.0)])
    got = f32_list(one(con, "SELECT rnn_sequence(json_array(year, quarter), x) FROM q"))
    assert got == [float(y * 100 + qn) for y, qn, _ in sorted(rows)]
    # mixed integer / real / text elements, arrays of different lengths; json() gives stored JSON text the subtype
    con.execute("CREATE TABLE mixed(k TEXT, v)")
    con.executemany("INSERT INTO mixed VALUES (?, ?)", [('[2,"b"]', 1), ('[2.5]', 2), ('[2]', 3), ('[2,"a"]', 4),
                                                        ('[1.5,"z",9]', 5), ('[-1e3]', 6)])
    assert f32_list(one(con, "SELECT rnn_sequence(json(k), v) FROM mixed")) == [6.0, 5.0, 3.0, 4.0, 1.0, 2.0]
    # ties on the keys: by the features, whatever the order of the rows
    assert f32_list(one(con, "SELECT rnn_sequence(json_array(1, 2), v) FROM (SELECT 3 v UNION ALL SELECT 1)")) == [
        1.0, 3.0]
    assert error_of(con, "SELECT rnn_sequence(json_array(1, json_array(2)), 1)") == (
        "rnn_sequence(): element 2 of the ordering key is an array, expected a number or text")
    # stored JSON text has no subtype: compared as text ('[10]' < '[9]')
    con.execute("CREATE TABLE j(k TEXT, v)")
    con.executemany("INSERT INTO j VALUES (?, ?)", [("[9]", 9.0), ("[10]", 10.0)])
    assert f32_list(one(con, "SELECT rnn_sequence(k, v) FROM j")) == [10.0, 9.0]
    assert f32_list(one(con, "SELECT rnn_sequence(json(k), v) FROM j")) == [9.0, 10.0]
    # the sequence feeds rnn_eval like a window in the same order
    m = models.recurrent("lstm", 1, 3, head=1)
    want = one(con, "SELECT rnn_predict(?, x) FROM (SELECT x FROM q WHERE quarter IS NOT NULL "
                    "ORDER BY year, quarter)", (m,))
    assert one(con, "SELECT rnn_eval(?, (SELECT rnn_sequence(json_array(year, quarter), x) FROM q))", (m,)) == want
    assert math.isfinite(want)
