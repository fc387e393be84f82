#!/usr/bin/python3
"""The tutorial's character RNN (sql/train_lang.py) trained in the database with rnn_train, against torch.

Run from the repository root after `make` (`make train-lang` does both):   /usr/bin/python3 sql/train_lang_rnn.py

Both sides train the same network from scratch: the tutorial's RNN, i2h and i2o over cat(one-hot character,
hidden), hidden 128, no hidden activation, log_softmax output, the class read after the last character, Adam
lr 3e-3, gradient norm clipped at 1 (sql/train_lang.py's recipe). torch trains with sql/train_lang.py's own loop
(train_lang.train: same-length batches, cosine learning rate); SQL with

    SELECT epoch, train_loss, val_loss FROM rnn_train(rnn_init('{"cell": "seed", "input_size": 48, ...}'),
        'SELECT word, pos, ch = ''a'', ch = ''b'', ..., language FROM chars', '{"task": "classify", ...}')

where chars holds one row per character (the one-hot columns are 48 comparisons in the query), and the held-out
words are scored with rnn_eval on the trained BLOB. The script prints both accuracies on the same held-out words
and their difference (the goal: within 2 points).

Data. With Debian's word lists installed (wamerican wngerman wfrench witalian wspanish wdutch), the training pool
and the 1,800 held-out words are sql/train_lang.py's own (same preprocessing, same seeded split), PER_CLASS words
drawn per language. Without them (as on a machine that only has the repository) it falls back to the 1,800
held-out words of tests/fixtures/lang_test.json: TRAIN_PER_CLASS of each language's 300 to train on, the rest
held out; the figures printed say which.
"""
import json
import os
import random
import sqlite3
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "python"))
import train_lang as tl  # noqa: E402

HIDDEN = 128
LR = 3e-3
CLIP = 1.0
SEED = 1234
EPOCHS_FULL, PER_CLASS, BATCH_FULL = 10, 16000, 128      # with the word lists: sql/train_lang.py's sizes
EPOCHS_SMALL, TRAIN_PER_CLASS, BATCH_SMALL = 15, 200, 16  # fixture words only: small data, small batches


def data():
    """(mode, train {label: words}, test {label: words}, vocab, labels)."""
    labels = [label for label, _, _ in tl.LISTS]
    if all(os.path.exists(os.path.join(tl.DICT_DIR, f)) for _, f, _ in tl.LISTS):
        per_lang, vocab, _ = tl.load_words()
        test, _, pool = tl.split(per_lang, random.Random(tl.SEED))
        rng = random.Random(SEED)
        train = {lab: rng.sample(pool[lab], min(PER_CLASS, len(pool[lab]))) for lab in labels}
        return "word lists", train, test, vocab, labels
    fx = json.load(open(os.path.join(ROOT, "tests", "fixtures", "lang_test.json"), encoding="utf-8"))
    train, test = {}, {}
    for lab in labels:
        words = sorted(w["word"] for w in fx["words"] if w["label"] == lab)
        random.Random(SEED).shuffle(words)
        train[lab], test[lab] = words[:TRAIN_PER_CLASS], words[TRAIN_PER_CLASS:]
    return "fixture words", train, test, fx["vocab"], labels


def onehots(word, index):
    rows = []
    for c in word:
        row = [0.0] * len(index)
        row[index[c]] = 1.0
        rows.append(row)
    return rows


def sql_train(con, train, vocab, labels, epochs, batch):
    """The trained BLOB and the per-epoch rows of rnn_train."""
    con.execute("CREATE TABLE chars(word INTEGER, pos INTEGER, ch TEXT, language TEXT)")
    items = [(w, lab) for lab in labels for w in train[lab]]
    random.Random(SEED).shuffle(items)      # word ids in a mixed order: the series split holds out a mix
    con.executemany("INSERT INTO chars VALUES (?, ?, ?, ?)",
                    [(k, p, c, lab) for k, (w, lab) in enumerate(items) for p, c in enumerate(w)])
    cols = ", ".join("ch = '%s'" % c for c in vocab)
    query = "SELECT word, pos, %s, language FROM chars" % cols
    spec = {"cell": "seed", "input_size": len(vocab), "hidden_size": HIDDEN, "output_size": len(labels),
            "hidden_activation": "none", "output_activation": "log_softmax", "seed": SEED}
    options = {"task": "classify", "epochs": epochs, "lr": LR, "clip": CLIP, "batch_size": batch,
               "labels": labels, "standardize": False, "val_fraction": 0.05, "seed": SEED}
    rows = con.execute("SELECT epoch, train_loss, val_loss, seconds, model FROM rnn_train(rnn_init(?), ?, ?)",
                       (json.dumps(spec), query, json.dumps(options))).fetchall()
    return rows[-1][4], rows


def sql_accuracy(con, blob, test, vocab, labels):
    import sqlite_rnn
    index = {c: i for i, c in enumerate(vocab)}
    right = n = 0
    for y, lab in enumerate(labels):
        for w in test[lab]:
            out = json.loads(con.execute("SELECT rnn_eval(?, ?)",
                                         (blob, sqlite_rnn.sequence(onehots(w, index)))).fetchone()[0])
            right += max(range(len(out)), key=out.__getitem__) == y
            n += 1
    return right / n


def torch_accuracy(train, test, vocab, labels, epochs, batch):
    import torch
    tl.EPOCHS, tl.BATCH, tl.HIDDEN, tl.LR, tl.SEED = epochs, batch, HIDDEN, LR, SEED
    tl.PER_CLASS_PER_EPOCH = max(len(v) for v in train.values())
    few = {lab: words[:20] for lab, words in test.items()}   # train_lang prints a val accuracy per epoch
    model = tl.train(train, few, vocab, labels)
    return tl.accuracy(model, test, {c: i for i, c in enumerate(vocab)}), torch.get_num_threads()


def main():
    import sqlite_rnn
    mode, train, test, vocab, labels = data()
    small = mode == "fixture words"
    epochs, batch = (EPOCHS_SMALL, BATCH_SMALL) if small else (EPOCHS_FULL, BATCH_FULL)
    n_train, n_test = sum(map(len, train.values())), sum(map(len, test.values()))
    print("data: %s; %d training words, %d held-out words, %d epochs, batch %d" % (mode, n_train, n_test,
                                                                                  epochs, batch), flush=True)
    con = sqlite3.connect(":memory:")
    sqlite_rnn.load(con)
    t0 = time.time()
    blob, rows = sql_train(con, train, vocab, labels, epochs, batch)
    sql_s = time.time() - t0
    for epoch, tr, va, sec, _ in rows:
        print("rnn_train epoch %2d  loss %.4f  val %.4f  (%.0f s)" % (epoch, tr, va, sec), flush=True)
    sql_acc = sql_accuracy(con, blob, test, vocab, labels)
    print("rnn_train: held-out accuracy %.1f%% (%d words), training %.0f s (1 thread)" % (100 * sql_acc, n_test,
                                                                                          sql_s), flush=True)
    t0 = time.time()
    torch_acc, threads = torch_accuracy(train, test, vocab, labels, epochs, batch)
    print("torch (sql/train_lang.py's loop): held-out accuracy %.1f%%, training %.0f s (%d threads)"
          % (100 * torch_acc, time.time() - t0, threads))
    print("difference: %.1f points (goal: within 2)" % (100 * (sql_acc - torch_acc)))


if __name__ == "__main__":
    main()
