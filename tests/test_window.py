"""Window semantics (ext/window.c rules 1-6): every frame equals a from-scratch run over the
frame's rows, checked two ways: bit-for-bit against SQLite's own recompute path (appending
EXCLUDE NO OTHERS makes SQLite step a fresh context per row) and within 2e-5 against the
pure-Python reference (tests/ref.py) run on the frame's rows, which json_group_array() over
the same window lists in window order."""
import json
import random

import models
import ref
from rnnlib import assert_close, connect, f32_list, one, error_of

FRAMES = [
    "ORDER BY t",                                            # default RANGE frame, ties share a value
    "ORDER BY t ROWS UNBOUNDED PRECEDING",
    "ORDER BY t, id ROWS 2 PRECEDING",
    "ORDER BY t, id ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING",
    "ORDER BY t, id ROWS BETWEEN 3 PRECEDING AND 1 PRECEDING",
    "ORDER BY t, id ROWS BETWEEN 1 FOLLOWING AND 3 FOLLOWING",
    "ORDER BY t, id ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING",
    "ORDER BY t, id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING",
    "ORDER BY t RANGE BETWEEN 2 PRECEDING AND CURRENT ROW",
    "ORDER BY t RANGE BETWEEN 1 PRECEDING AND 2 FOLLOWING",
    "ORDER BY t GROUPS 1 PRECEDING",
    "ORDER BY t GROUPS BETWEEN 1 PRECEDING AND 1 FOLLOWING",
    "ORDER BY t, id ROWS BETWEEN 2 PRECEDING AND 2 FOLLOWING EXCLUDE CURRENT ROW",
    "ORDER BY t ROWS BETWEEN 2 PRECEDING AND 2 FOLLOWING EXCLUDE TIES",
    "ORDER BY t GROUPS BETWEEN 1 PRECEDING AND 1 FOLLOWING EXCLUDE GROUP",
    "",                                                      # OVER (PARTITION BY p): one value per partition
]

MODELS = {
    "gru1": (lambda: models.recurrent("gru", 1, 5, head=1, seed=3), 1),
    "lstm2": (lambda: models.recurrent("lstm", 2, 4, layers=2, seed=4), 2),
    "seed": (lambda: models.seed_rnn(1, 6, 3, seed=5, metadata={"output_activation": "log_softmax"}), 1),
}


def make_db(n_features, seed=7):
    rng = random.Random(seed)
    con = connect()
    con.execute("CREATE TABLE d(id INTEGER PRIMARY KEY, p INTEGER, t INTEGER, x1 REAL, x2 REAL)")
    rows = []
    for p in range(3):
        t = 0
        for _ in range(rng.randint(8, 25)):
            t += rng.choice([0, 1, 1, 2])            # ties on t
            x1 = None if rng.random() < 0.1 else round(rng.gauss(0, 1), 3)
            x2 = None if rng.random() < 0.05 else round(rng.gauss(0, 1), 3)
            rows.append((p, t, x1, x2))
    rows.append((3, 0, None, None))                   # a partition with only NULLs
    con.executemany("INSERT INTO d(p, t, x1, x2) VALUES (?,?,?,?)", rows)
    return con


def frame_values(con, frame, feats, fn="rnn_predict"):
    over = "PARTITION BY p " + frame
    args = ", ".join(feats)
    sql = ("SELECT id, {fn}('m', {a}) OVER w, json_group_array(json_array({a})) OVER w FROM d "
           "WINDOW w AS ({o}) ORDER BY id").format(fn=fn, a=args, o=over)
    return con.execute(sql).fetchall(), sql


def check_frame(name, frame):
    make, nf = MODELS[name]
    blob = make()
    model = ref.Model(blob)
    con = make_db(nf)
    models.registry(con, m=blob)
    feats = ["x1", "x2"][:nf]
    for fn in ("rnn_predict", "rnn_hidden"):
        rows, sql = frame_values(con, frame, feats, fn)
        # 1. equals SQLite's recompute path bit for bit (no EXCLUDE clause yet in the frame)
        if "EXCLUDE" not in frame and frame:
            explicit = frame if any(k in frame for k in ("ROWS", "RANGE", "GROUPS")) else \
                frame + " RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
            again = con.execute(sql.replace(
                "WINDOW w AS (PARTITION BY p " + frame + ")",
                "WINDOW w AS (PARTITION BY p " + explicit + " EXCLUDE NO OTHERS)")).fetchall()
            assert again == rows, (frame, fn)
        # 2. equals the reference on the frame's rows (NULL rows skipped)
        for rid, got, frame_json in rows:
            seq = [r for r in json.loads(frame_json) if None not in r]
            if not seq:
                assert got is None, (rid, got)
                continue
            if fn == "rnn_predict":
                want = model.run(seq)[-1]
                got_v = json.loads(got) if isinstance(got, str) else [got]
                assert_close(got_v, want, what="%s row %d" % (frame, rid))
            else:
                assert_close(f32_list(got), model.hidden(seq), what="hidden %s row %d" % (frame, rid))


def test_frames():
    for name in MODELS:
        for frame in FRAMES:
            yield "%s %s" % (name, frame or "OVER(PARTITION BY p)"), (lambda n=name, f=frame: check_frame(n, f))


def test_filter_clause():
    """FILTER rows get neither xStep nor xInverse; xValue still runs for every row."""
    blob = models.recurrent("gru", 1, 3, head=1, seed=9)
    con = make_db(1)
    models.registry(con, m=blob)
    model = ref.Model(blob)
    rows = con.execute(
        "SELECT id, rnn_predict('m', x1) FILTER (WHERE x1 > 0) OVER w, "
        "json_group_array(x1) FILTER (WHERE x1 > 0) OVER w FROM d "
        "WINDOW w AS (PARTITION BY p ORDER BY t, id ROWS 3 PRECEDING) ORDER BY id").fetchall()
    for rid, got, frame in rows:
        seq = [[v] for v in json.loads(frame)]
        if not seq:
            assert got is None
        else:
            assert_close(got, model.run(seq)[-1][0], what="row %d" % rid)


def test_aggregate_group_by():
    """Without OVER, an aggregate per group; feed it in order through an ordered subquery."""
    blob = models.recurrent("lstm", 1, 3, head=1, seed=2)
    con = make_db(1)
    models.registry(con, m=blob)
    model = ref.Model(blob)
    got = dict(con.execute("SELECT p, rnn_predict('m', x1) FROM (SELECT * FROM d ORDER BY p, t, id) "
                           "GROUP BY p").fetchall())
    for p in range(3):
        seq = [[r[0]] for r in con.execute("SELECT x1 FROM d WHERE p=? AND x1 IS NOT NULL ORDER BY t, id", (p,))]
        assert_close(got[p], model.run(seq)[-1][0], what="partition %d" % p)
    assert got[3] is None
    # empty input: one NULL row
    assert one(con, "SELECT rnn_predict('m', x1) FROM d WHERE 0") is None
    assert one(con, "SELECT rnn_hidden('m', x1) FROM d WHERE 0") is None


def test_running_frame_is_incremental():
    """A long running window over one partition stays exact (no drift from O(1) updates)."""
    blob = models.recurrent("gru", 1, 4, head=1, seed=11)
    model = ref.Model(blob)
    con = connect()
    models.registry(con, m=blob)
    con.execute("CREATE TABLE s(t INTEGER PRIMARY KEY, v REAL)")
    rng = random.Random(1)
    xs = [round(rng.gauss(0, 1), 4) for _ in range(2000)]
    con.executemany("INSERT INTO s VALUES (?,?)", list(enumerate(xs)))
    got = [r[0] for r in con.execute("SELECT rnn_predict('m', v) OVER (ORDER BY t) FROM s")]
    want = [y[0] for y in model.run([[v] for v in xs])]
    assert_close(got, want)


def test_two_calls_one_window():
    """Two rnn_predict calls over one window keep independent states."""
    con = make_db(1)
    models.registry(con, a=models.recurrent("gru", 1, 3, head=1, seed=1),
                    b=models.recurrent("rnn_tanh", 1, 3, head=1, seed=2))
    rows = con.execute("SELECT rnn_predict('a', x1) OVER w, rnn_predict('b', x1) OVER w FROM d "
                       "WINDOW w AS (PARTITION BY p ORDER BY t, id ROWS 2 PRECEDING)").fetchall()
    solo_a = con.execute("SELECT rnn_predict('a', x1) OVER w FROM d "
                         "WINDOW w AS (PARTITION BY p ORDER BY t, id ROWS 2 PRECEDING)").fetchall()
    assert [r[0] for r in rows] == [r[0] for r in solo_a]


def test_model_change_in_partition():
    con = make_db(1)
    models.registry(con, a=models.recurrent("gru", 1, 3, head=1, seed=1),
                    b=models.recurrent("gru", 1, 3, head=1, seed=2))
    assert error_of(con, "SELECT rnn_predict(CASE WHEN id % 2 THEN 'a' ELSE 'b' END, x1) "
                         "OVER (PARTITION BY p ORDER BY id) FROM d") == \
        "rnn_predict(): the model argument changed within a window partition"
