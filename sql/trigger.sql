-- Score each reading as it is inserted: a trigger runs the model over the device's history and stores the
-- forecast of the next reading, and how far the new reading is from the forecast stored before it.
--
-- Run from the repository root (after `make`):   sqlite3 < sql/trigger.sql
-- tests/test_sql_examples.py runs it and compares the output with sql/expected/trigger.out.
--
-- A trigger body has no window over the table, so the trigger builds the device's sequence with the aggregate
-- rnn_sequence(t, temp), which sorts by t whatever order SQLite reads the rows in, and runs it with rnn_eval.
-- That reads the device's whole history on every insert: O(history) per row, fine for a few thousand readings.
-- For long histories, keep the last N readings in the sequence (the demo GRU needs about a day: 144 readings)
-- with `AND t > NEW.t - 86400` in the subquery. rnn_eval reads rnn_models by name, so SQLite allows it in
-- the trigger of a trusted schema only (the default; not under PRAGMA trusted_schema=OFF).
.load ./rnn
.bail on

CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL);
INSERT INTO rnn_models VALUES ('room_temp', readfile('sql/demo_model.safetensors'));

CREATE TABLE readings(device TEXT, t INTEGER, temp REAL, PRIMARY KEY(device, t));
CREATE TABLE predictions(
  device    TEXT,
  t         INTEGER,
  expected  REAL,      -- the forecast for this reading, made at the device's previous reading (NULL at first)
  error     REAL,      -- |reading - expected|
  next_temp REAL,      -- the forecast for the device's next reading
  PRIMARY KEY(device, t));

CREATE TRIGGER score_reading AFTER INSERT ON readings
BEGIN
  INSERT INTO predictions(device, t, expected, error, next_temp)
  SELECT NEW.device, NEW.t, prev.next_temp, abs(NEW.temp - prev.next_temp),
         (SELECT rnn_eval('room_temp', rnn_sequence(t, temp)) FROM readings WHERE device = NEW.device)
  FROM (SELECT 1) LEFT JOIN (
    SELECT next_temp FROM predictions WHERE device = NEW.device AND t < NEW.t ORDER BY t DESC LIMIT 1) AS prev;
END;

-- Readings arrive one by one, two devices interleaved; the last one of hot-a1 is a fault (+5 C).
INSERT INTO readings VALUES ('cold-a1', 1709251200, 18.4375);
INSERT INTO readings VALUES ('hot-a1',  1709251200, 29.5);
INSERT INTO readings VALUES ('cold-a1', 1709251800, 18.5);
INSERT INTO readings VALUES ('hot-a1',  1709251800, 29.625);
INSERT INTO readings VALUES ('cold-a1', 1709252400, 18.4375);
INSERT INTO readings VALUES ('hot-a1',  1709252400, 29.5625);
INSERT INTO readings VALUES ('cold-a1', 1709253000, 18.5625);
INSERT INTO readings VALUES ('hot-a1',  1709253000, 29.6875);
INSERT INTO readings VALUES ('cold-a1', 1709253600, 18.5);
INSERT INTO readings VALUES ('hot-a1',  1709253600, 34.75);

.mode box
SELECT p.device, strftime('%H:%M', p.t, 'unixepoch') AS time, printf('%.2f', r.temp) AS reading,
       iif(p.expected IS NULL, '', printf('%.2f', p.expected)) AS expected,
       iif(p.error IS NULL, '', printf('%.2f', p.error)) AS error,
       printf('%.2f', p.next_temp) AS next_temp
FROM predictions AS p JOIN readings AS r USING (device, t)
ORDER BY p.device, p.t;

-- The same forecasts by a window query over the table, for comparison: the trigger stored what this computes.
SELECT count(*) AS rows_agreeing_with_window
FROM predictions AS p JOIN (
  SELECT device, t, rnn_predict('room_temp', temp) OVER (PARTITION BY device ORDER BY t) AS next_temp
  FROM readings) AS w USING (device, t)
WHERE w.next_temp = p.next_temp;
