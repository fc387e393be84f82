-- sqlite-rnn example: which language is a word from? The character RNN of the classic PyTorch tutorial, in SQL.
--
-- Run from the repository root:   make && sqlite3 < sql/lang.sql
-- (or, in the sqlite3 shell started at the repository root:   .read sql/lang.sql)
--
-- The model sql/lang_model.safetensors is EXACTLY the tutorial's RNN ("Classifying Names with a Character-Level
-- RNN"): at each letter, combined = cat(one-hot letter, hidden), hidden = i2h(combined), output = i2o(combined),
-- and LogSoftmax on the output after the last letter; hidden size 128, 6 classes. sql/train_lang.py trained it
-- on the Debian word lists (wamerican, wngerman, wfrench, witalian, wspanish, wdutch) and exported its
-- state_dict (i2h.weight, i2h.bias, i2o.weight, i2o.bias) as safetensors, with the metadata cell=seed,
-- output_activation=log_softmax, vocab (the 48 letters it knows) and labels (the 6 languages). It gets about
-- 78% of 1800 held-out words right (chance: 17%); tests/fixtures/lang_test.json has them.
--
-- The model knows lower-case letters only: a-z, ß and the accented letters àáâäçèéêëìíîïñòóôöúûü, one per Unicode
-- code point (precomposed, NFC). Give it lower-case words: a character outside its vocab (an upper-case letter,
-- an apostrophe, a space) is an error that names it. SQLite's lower() folds only ASCII letters: lower('Müller')
-- is 'müller', but lower('MÜLLER') is 'mÜller'.
--
-- Python's sqlite3 can run this file too: skip the lines that start with '.', and supply readfile().

.load ./rnn
.bail on

-- == 1. The model =========================================================================================

-- The schema of sql/rnn_models.sql; readfile() is the sqlite3 shell's.
CREATE TABLE IF NOT EXISTS rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL);
INSERT OR REPLACE INTO rnn_models(name, model) VALUES ('lang', readfile('sql/lang_model.safetensors'));

-- == 2. Classify ==========================================================================================

-- None of these words is in the training data. rnn_classify() splits the TEXT into the model's vocab, feeds
-- the one-hot letters to the RNN, and returns the label of the largest output. rnn_eval() returns the 6
-- log-probabilities themselves (a JSON array, in the order of the labels); exp() of the largest is the
-- model's confidence. The model gets 17 of these 20 right; it calls schmidt English, and kindergarten and
-- bonjour Dutch: a letter-by-letter model of 23,718 weights has its limits.
.mode box
.headers on
WITH examples(word, language) AS (VALUES
  ('schmidt', 'German'), ('müller', 'German'), ('schneider', 'German'), ('weltschmerz', 'German'),
  ('kindergarten', 'German'), ('garcia', 'Spanish'), ('fernández', 'Spanish'), ('quesadilla', 'Spanish'),
  ('ferrari', 'Italian'), ('bianchi', 'Italian'), ('gnocchi', 'Italian'), ('croissant', 'French'),
  ('château', 'French'), ('soufflé', 'French'), ('bonjour', 'French'), ('smith', 'English'),
  ('williams', 'English'), ('downtown', 'English'), ('vandenberg', 'Dutch'), ('jansen', 'Dutch')
)
SELECT word,
       language,
       rnn_classify('lang', word) AS model_says,
       (SELECT round(exp(max(value)), 2) FROM json_each(rnn_eval('lang', word))) AS confidence
FROM examples;

-- == 3. One word, every language ========================================================================

-- The labels are in the model's metadata (rnn_info() shows it); rnn_eval()'s outputs come in their order.
-- kindergarten, a German word that English and Dutch borrowed, is a close call between German and Dutch:
WITH labels AS (SELECT key, value FROM json_each(json_extract(rnn_info('lang'), '$.metadata.labels'))),
     logp AS (SELECT key, value FROM json_each(rnn_eval('lang', 'kindergarten')))
SELECT labels.value AS language, round(exp(logp.value), 3) AS probability
FROM labels JOIN logp USING (key)
ORDER BY probability DESC;
