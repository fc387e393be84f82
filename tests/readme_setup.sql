-- Setup for the README examples (tests/test_readme.py runs every ```sql block of README.md
-- after this, in a fresh in-memory database with the extension loaded, and compares the
-- output with the ```output block that follows it).
CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL);
INSERT INTO rnn_models VALUES ('room_temp', readfile('sql/demo_model.safetensors'));
INSERT INTO rnn_models VALUES ('lang', readfile('sql/lang_model.safetensors'));
CREATE TABLE readings(device TEXT, t INTEGER, temp REAL, PRIMARY KEY(device, t));
INSERT INTO readings VALUES
  ('hot-a1', 0, 29.5), ('hot-a1', 600, 29.6), ('hot-a1', 1200, 29.8), ('hot-a1', 1800, 30.1),
  ('hot-a1', 2400, NULL), ('hot-a1', 3000, 30.6),
  ('cold-a1', 0, 18.4), ('cold-a1', 600, 18.5), ('cold-a1', 1200, 18.5), ('cold-a1', 1800, 25.0);
