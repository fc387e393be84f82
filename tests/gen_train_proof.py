"""Generate tests/fixtures/train_proof.json: rnn_train's training redone in torch (tests/train_ref.py).

Regenerate after building rnn.so (needs torch; the result is committed, so tests/test_train_proof.py runs without
torch, e.g. under RNN_TEST_HIDE=torch,numpy):

    /usr/bin/python3 tests/gen_train_proof.py

For every case of CASES (small synthetic data, a cell, 1-2 layers, a task) and of REAL (statsmodels' sunspots and
co2 from sql/data/), it draws the initial model with the extension's rnn_init(spec), trains it in torch exactly as
rnn_train trains (train_ref.train: same windows, standardisation, shuffles, Adam, clipping) and writes
    {"cases": {name: {"spec", "options", "query", "init_sha256", "losses": [[train, val] per epoch]}},
     "real": {name: {... the same, "val_rmse": RMSE of the best epoch in the data's units}}}
init_sha256 pins the BLOB the losses started from: when rnn_init's bytes change, the fixture must be regenerated
(the test says so). Losses keep 9 significant digits.

    /usr/bin/python3 tests/gen_train_proof.py --lesson-torch DB
trains sql/train_long_memory.sql's three models in torch instead and writes its tables into DB, for
sql/train_long_memory.gp (gnuplot -e "db='DB'; source='torch'" sql/train_long_memory.gp).
"""
import hashlib
import json
import math
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train_ref  # noqa: E402
from rnnlib import FIXTURES, ROOT, connect  # noqa: E402

FIXTURE = os.path.join(FIXTURES, "train_proof.json")
DATA = os.path.join(ROOT, "sql", "data")


def synthetic_sql(n_series, steps):
    """The synthetic table every case trains on: data(k, t, x1, x2, y, label, name), deterministic floats."""
    rows = []
    for k in range(n_series):
        for t in range(steps):
            x1 = math.sin(0.37 * t + 0.9 * k) + 0.1 * math.cos(1.7 * t * (k + 1))
            x2 = math.cos(0.21 * t * (1 + k % 3)) * (0.5 + 0.1 * k)
            y = 0.6 * x1 - 0.3 * x2 + 0.2 * math.sin(0.5 * t)
            rows.append((k, t, float("%.6f" % x1), float("%.6f" % x2), float("%.6f" % y), k % 3,
                         ("low", "mid", "high")[k % 3]))
    return rows


def load_synthetic(con):
    con.execute("CREATE TABLE data(k INTEGER, t INTEGER, x1 REAL, x2 REAL, y REAL, label INTEGER, name TEXT)")
    con.executemany("INSERT INTO data VALUES (?, ?, ?, ?, ?, ?, ?)", synthetic_sql(12, 40))


def load_real(con):
    for name in ("sunspots", "co2"):
        with open(os.path.join(DATA, name + ".sql"), encoding="utf-8") as f:
            con.executescript(f.read())


NEXT = "SELECT k, t, x1, x2 FROM data"
REGRESS = "SELECT k, t, x1, x2, y FROM data"
CLASSIFY = "SELECT k, t, x1, x2, label FROM data"
CLASSIFY_TEXT = "SELECT k, t, x1, x2, name FROM data"
COMMON = {"epochs": 5, "lr": 0.01, "batch_size": 4, "window": 16, "seed": 7}


def case(spec, query, **options):
    o = dict(COMMON, task={NEXT: "next", REGRESS: "regress"}.get(query, "classify"))
    o.update(options)
    return {"spec": spec, "query": query, "options": o}


CASES = {
    "gru_next_l1": case({"cell": "gru", "input_size": 2, "hidden_size": 8, "output_size": 2, "seed": 1}, NEXT,
                        clip=1.0),
    "gru_regress_l2_series_split": case(
        {"cell": "gru", "input_size": 2, "hidden_size": 6, "num_layers": 2, "output_size": 1, "seed": 2}, REGRESS,
        val_split="series", val_fraction=0.25),
    "lstm_proj_regress_l2": case(
        {"cell": "lstm", "input_size": 2, "hidden_size": 8, "num_layers": 2, "proj_size": 3, "output_size": 1,
         "seed": 3}, REGRESS, clip=0.5),
    "lstm_next_l1_weight_decay": case({"cell": "lstm", "input_size": 2, "hidden_size": 5, "output_size": 2,
                                       "seed": 4}, NEXT, weight_decay=0.01, betas=[0.8, 0.99], window=7),
    "tanh_next_l2": case({"cell": "rnn_tanh", "input_size": 2, "hidden_size": 7, "num_layers": 2,
                          "output_size": 2, "seed": 5}, NEXT, clip=1.0, standardize=False),
    "tanh_regress_l1_tanh_out": case({"cell": "rnn_tanh", "input_size": 2, "hidden_size": 7, "output_size": 1,
                                      "output_activation": "tanh", "seed": 6}, REGRESS, shuffle=False),
    "seed_classify": case({"cell": "seed", "input_size": 2, "hidden_size": 8, "output_size": 3, "seed": 7},
                          CLASSIFY, clip=1.0, val_fraction=0.25, val_split="series"),
    "gru_classify_l2_labels": case({"cell": "gru", "input_size": 2, "hidden_size": 6, "num_layers": 2,
                                    "output_size": 3, "seed": 8}, CLASSIFY_TEXT, labels=["low", "mid", "high"],
                                   val_fraction=0.25, val_split="series"),
    "lstm_classify_l1": case({"cell": "lstm", "input_size": 2, "hidden_size": 6, "output_size": 3, "seed": 9},
                             CLASSIFY, batch_size=3, val_fraction=0.25),
    "seed_regress_relu_hidden": case({"cell": "seed", "input_size": 2, "hidden_size": 6, "output_size": 1,
                                      "hidden_activation": "relu", "seed": 10}, REGRESS),
}

# Real data: one long series each, forecasting the next value. 40 epochs keep each run to a few seconds.
REAL_OPTIONS = {"task": "next", "epochs": 40, "lr": 0.01, "batch_size": 4, "window": 24, "clip": 1.0,
                "val_fraction": 0.2, "seed": 1}
# co2 rises through the decades: the validation tail (1993-2001) lies above every training value, so the models
# forecast the month-to-month change (an error in ppm of change is the same error in ppm of the level).
CO2 = ("SELECT series, month, change FROM (SELECT series, month, ppm - lag(ppm) OVER (ORDER BY month) AS change "
       "FROM co2) WHERE change IS NOT NULL")
REAL = {
    "sunspots_gru": {"spec": {"cell": "gru", "input_size": 1, "hidden_size": 16, "output_size": 1, "seed": 11},
                     "query": "SELECT series, year, activity FROM sunspots", "options": REAL_OPTIONS},
    "sunspots_lstm": {"spec": {"cell": "lstm", "input_size": 1, "hidden_size": 16, "output_size": 1, "seed": 12},
                      "query": "SELECT series, year, activity FROM sunspots", "options": REAL_OPTIONS},
    "co2_gru": {"spec": {"cell": "gru", "input_size": 1, "hidden_size": 16, "output_size": 1, "seed": 13},
                "query": CO2, "options": REAL_OPTIONS},
    "co2_lstm": {"spec": {"cell": "lstm", "input_size": 1, "hidden_size": 16, "output_size": 1, "seed": 14},
                 "query": CO2, "options": REAL_OPTIONS},
}


def init_blob(con, spec):
    return bytes(con.execute("SELECT rnn_init(?)", (json.dumps(spec),)).fetchone()[0])


def torch_run(con, c):
    """(init BLOB, per-epoch losses, prep) of one case trained by the torch reference."""
    blob = init_blob(con, c["spec"])
    rows = con.execute(c["query"]).fetchall()
    losses, _, prep = train_ref.train(blob, rows, c["options"], threads=1)
    return blob, losses, prep


def best_rmse(losses, prep):
    """RMSE in the data's units of the epoch with the lowest validation loss (the model rnn_train keeps)."""
    return train_ref.rmse_original_units(min(v for _, v in losses), prep)


LESSON_SQL = os.path.join(ROOT, "sql", "train_long_memory.sql")


def lesson_parts():
    """(data SQL, [(cell, spec)], query, options) of sql/train_long_memory.sql, read from the file itself."""
    text = open(LESSON_SQL, encoding="utf-8").read()
    data = text[text.index("CREATE TABLE memory"):text.index("-- One loss curve")]
    specs = [(c, json.loads(sp)) for c, sp in re.findall(r"\('(\w+)', '(\{[^']*\})'\)", text)]
    query, options = re.search(r"rnn_train\(rnn_init\(lesson.spec\), '([^']*)',\s*'(\{[^']*\})'\)", text).groups()
    return data, specs, query, json.loads(options)


def lesson_torch(db):
    """The lesson trained by the torch reference (from rnn_init's documented initialisation, in Python): fills
    memory and curves(cell, epoch, train_loss, val_loss) of the database db, as sql/train_long_memory.sql does."""
    import sqlite3
    data, specs, query, options = lesson_parts()
    con = sqlite3.connect(db)
    con.executescript(data + "CREATE TABLE curves(cell TEXT, epoch INTEGER, train_loss REAL, val_loss REAL);")
    rows = con.execute(query).fetchall()
    for cell, spec in specs:
        losses, _, _ = train_ref.train(train_ref.init_blob(spec), rows, options, threads=1)
        con.executemany("INSERT INTO curves VALUES (?, ?, ?, ?)",
                        [(cell, e + 1, t, v) for e, (t, v) in enumerate(losses)])
        print(cell, " ".join("%.3f" % v for _, v in losses), flush=True)
    con.commit()


def g9(v):
    return None if v is None else float("%.9g" % v)


def main():
    if sys.argv[1:2] == ["--lesson-torch"]:
        return lesson_torch(sys.argv[2])
    con = connect()
    load_synthetic(con)
    load_real(con)
    out = {"cases": {}, "real": {}}
    for group, cases in (("cases", CASES), ("real", REAL)):
        for name, c in cases.items():
            blob, losses, prep = torch_run(con, c)
            entry = dict(c, init_sha256=hashlib.sha256(blob).hexdigest(),
                         losses=[[g9(t), g9(v)] for t, v in losses])
            if group == "real":
                entry["val_rmse"] = g9(best_rmse(losses, prep))
            out[group][name] = entry
            print(name, entry["losses"][-1], entry.get("val_rmse", ""), flush=True)
    with open(FIXTURE, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", os.path.relpath(FIXTURE, ROOT))


if __name__ == "__main__":
    main()
