-- Score each reading as it is inserted, in O(1): series_state keeps each device's recurrent state (a state
-- BLOB, see README "Scoring as rows arrive"); a trigger advances it by one step with rnn_step and stores the
-- forecast of the next reading (rnn_output of the new state) and how far the new reading is from the forecast
-- stored before it. Each insert costs one model step, however long the device's history.
--
-- Run from the repository root (after `make`):   sqlite3 < sql/trigger.sql
-- tests/test_sql_examples.py runs it and compares the output with sql/expected/trigger.out; tests/test_state.py
-- checks it against the window query on random data and the ordering rule below.
--
-- Order: a state can only move forward, so a reading must be later than the device's last one. A reading out
-- of order or with a timestamp already seen is refused (the BEFORE trigger's RAISE aborts the INSERT, nothing is
-- written). To take late data, insert it with the triggers dropped, then rebuild that device's row of
-- series_state from the table (and its predictions, if they matter, with rnn_predict over the table):
--   UPDATE series_state SET (t, state) = (SELECT t, rnn_state('room_temp', temp) OVER (ORDER BY t)
--     FROM readings WHERE device = series_state.device ORDER BY t DESC LIMIT 1) WHERE device = ?;
-- A NULL reading leaves the state as it is (as the window skips it) but still moves t on.
-- rnn_step and rnn_output read rnn_models by name, so SQLite allows them in the triggers of a trusted schema
-- only (the default; not under PRAGMA trusted_schema=OFF).
.load ./rnn
.bail on

CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL);
INSERT INTO rnn_models VALUES ('room_temp', readfile('sql/demo_model.safetensors'));

CREATE TABLE readings(device TEXT, t INTEGER, temp REAL, PRIMARY KEY(device, t));
CREATE TABLE series_state(
  device TEXT PRIMARY KEY,
  t      INTEGER NOT NULL,   -- the device's last reading
  state  BLOB              -- the model's state after it (NULL until a non-NULL reading)
);
CREATE TABLE predictions(
  device    TEXT,
  t         INTEGER,
  expected  REAL,      -- the forecast for this reading, made at the device's previous reading (NULL at first)
  error     REAL,      -- |reading - expected|
  next_temp REAL,      -- the forecast for the device's next reading
  PRIMARY KEY(device, t));

CREATE TRIGGER reading_in_order BEFORE INSERT ON readings
WHEN NEW.t <= (SELECT t FROM series_state WHERE device = NEW.device)
BEGIN
  SELECT RAISE(ABORT, 'readings: out of order: a reading must be later than the device''s last one');
END;

CREATE TRIGGER score_reading AFTER INSERT ON readings
BEGIN
  INSERT INTO series_state(device, t, state)
  VALUES (NEW.device, NEW.t,
          rnn_step('room_temp', (SELECT state FROM series_state WHERE device = NEW.device), NEW.temp))
  ON CONFLICT(device) DO UPDATE SET t = excluded.t, state = excluded.state;
  INSERT INTO predictions(device, t, expected, error, next_temp)
  SELECT NEW.device, NEW.t, prev.next_temp, abs(NEW.temp - prev.next_temp),
         (SELECT rnn_output('room_temp', state) FROM series_state WHERE device = NEW.device)
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

-- The same forecasts by a window query over the whole table: the trigger stored exactly what this computes.
SELECT count(*) AS rows_agreeing_with_window
FROM predictions AS p JOIN (
  SELECT device, t, rnn_predict('room_temp', temp) OVER (PARTITION BY device ORDER BY t) AS next_temp
  FROM readings) AS w USING (device, t)
WHERE w.next_temp = p.next_temp;

-- The next 3 readings forecast from each device's stored state: 3 steps each, not history + 3.
SELECT s.device, f.step, printf('%.2f', f.output) AS forecast
FROM series_state AS s, rnn_forecast('room_temp', NULL, 3, s.state) AS f
ORDER BY s.device, f.step;
