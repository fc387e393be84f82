-- The lesson of long memory, trained in the database: remember the first element of an 80-step sequence.
--
-- Run from the repository root (after `make`):   sqlite3 < sql/train_long_memory.sql
-- (about 10 s: three models, 40 epochs each). `make lesson` also draws the loss curves
-- (sql/train_long_memory.gp -> docs/train_long_memory.png). tests/test_sql_examples.py runs this file and
-- compares its output with sql/expected/train_long_memory.out; tests/test_train_proof.py checks the thresholds.
--
-- Each sequence starts with a value drawn uniformly from [-1, 1] (marked by the feature `first` = 1), followed
-- by 79 steps of noise of the same size (first = 0). The target at EVERY step is the first value: the model must
-- store a real number for 79 steps while noise keeps arriving. A tanh RNN can only hold it in a state that
-- every new input disturbs: it learns a coarse latch (the sign, roughly the size) and stalls with a validation
-- MSE near 0.3 (of 1: the standardised targets' variance). An LSTM keeps it in its cell (input gate shut, forget
-- gate open after the first step) and a GRU in its update gate: both go below 0.02. All three start from
-- PyTorch's initialisation (rnn_init), train with the same options, and clip the gradient norm at 1.
.load ./rnn
.bail on

-- 400 sequences x 80 steps. The noise is an integer hash of (sequence, step): the same on every machine.
CREATE TABLE memory(seq INTEGER, step INTEGER, value REAL, first REAL, target REAL);
INSERT INTO memory
WITH RECURSIVE
  seqs(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM seqs WHERE k < 399),
  steps(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM steps WHERE i < 79),
  h1(k, i, x) AS (SELECT k, i, (k * 100003 + i + 1) * 2654435761 % 4294967296 FROM seqs, steps),
  -- x ^ (x >> 15), written with | and & (SQLite has no XOR), times an odd constant, mod 2^32
  h2(k, i, y) AS (SELECT k, i, ((x | (x >> 15)) - (x & (x >> 15))) * 73244475 % 4294967296 FROM h1),
  h3(k, i, u) AS (SELECT k, i, ((y | (y >> 13)) - (y & (y >> 13))) / 4294967296.0 FROM h2),
  firsts(k, v) AS (SELECT k, 2 * u - 1 FROM h3 WHERE i = 0)
SELECT h3.k, h3.i, CASE WHEN h3.i = 0 THEN firsts.v ELSE 2 * h3.u - 1 END, h3.i = 0, firsts.v
FROM h3 JOIN firsts USING (k);

-- One loss curve per cell. The last 20% of the sequences (in key order) are the validation set; a window of 80
-- steps keeps each sequence whole (backpropagation through all 80 steps).
CREATE TABLE curves(cell TEXT, epoch INTEGER, train_loss REAL, val_loss REAL);
CREATE TABLE lesson(cell TEXT PRIMARY KEY, spec TEXT);
INSERT INTO lesson VALUES
  ('rnn_tanh', '{"cell": "rnn_tanh", "input_size": 2, "hidden_size": 16, "output_size": 1, "seed": 1}'),
  ('lstm', '{"cell": "lstm", "input_size": 2, "hidden_size": 16, "output_size": 1, "seed": 1}'),
  ('gru', '{"cell": "gru", "input_size": 2, "hidden_size": 16, "output_size": 1, "seed": 1}');
INSERT INTO curves
SELECT lesson.cell, epoch, train_loss, val_loss
FROM lesson, rnn_train(rnn_init(lesson.spec), 'SELECT seq, step, value, first, target FROM memory',
                       '{"task": "regress", "epochs": 40, "lr": 0.01, "batch_size": 32, "window": 80,
                         "clip": 1.0, "val_split": "series", "val_fraction": 0.2, "seed": 1}')
ORDER BY lesson.cell, epoch;

-- Validation MSE (standardised: 1.0 is knowing nothing) after 10, 20 and 40 epochs.
.mode column
SELECT cell,
       printf('%.2f', max(CASE WHEN epoch = 10 THEN val_loss END)) AS epoch_10,
       printf('%.2f', max(CASE WHEN epoch = 20 THEN val_loss END)) AS epoch_20,
       printf('%.2f', max(CASE WHEN epoch = 40 THEN val_loss END)) AS epoch_40,
       CASE WHEN max(CASE WHEN epoch = 40 THEN val_loss END) < 0.05 THEN 'remembers' ELSE 'forgets' END AS verdict
FROM curves GROUP BY cell ORDER BY epoch_40 DESC;
