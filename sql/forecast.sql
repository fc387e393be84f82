-- Forecast the next 24 readings (4 hours) of every device's series, in one query joining rnn_forecast to the
-- devices table.
--
-- Run from the repository root (after `make`):   sqlite3 < sql/forecast.sql
-- tests/test_sql_examples.py runs it and compares the output with sql/expected/forecast.out.
--
-- rnn_forecast(model, sequence, horizon) runs the model over the sequence, then feeds each forecast back in as
-- the next input: step 1 is the model's forecast after the last reading, step k+1 its forecast after step k.
-- The demo GRU (sql/demo_model.safetensors) forecasts the next server-room temperature from the readings so far;
-- run open-loop like this it carries each device's level and daily cycle forward (here: the morning rise), and
-- its errors compound with the horizon, as nothing corrects them.
.load ./rnn
.bail on

CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL);
INSERT INTO rnn_models VALUES ('room_temp', readfile('sql/demo_model.safetensors'));
CREATE TABLE devices(device TEXT PRIMARY KEY, model TEXT NOT NULL REFERENCES rnn_models(name));
INSERT INTO devices VALUES ('cold-a1', 'room_temp'), ('hot-a1', 'room_temp'), ('hot-b2', 'room_temp');

-- Readings every 10 minutes from 2024-03-01 00:00 to 2024-03-02 09:50 UTC: a daily cycle peaking in the
-- afternoon, a per-device level and swing, a deterministic noise (a multiplicative hash of the reading
-- number), rounded to 1/16 C.
CREATE TABLE readings(device TEXT, t INTEGER, temp REAL, PRIMARY KEY(device, t));
INSERT INTO readings
WITH RECURSIVE k(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM k WHERE k < 204 - 1),
  shape(id, device, base, swing, noise) AS (VALUES
    (1, 'cold-a1', 18.5, 1.25, 0.25), (2, 'hot-a1', 29.0, 3.0, 0.375), (3, 'hot-b2', 31.0, 4.0, 0.5)),
  x(device, k, u, h) AS (
    SELECT device, k, (2 * ((10 * k + 1260) % 1440) - 1440) / 1440.0,   -- time of day mapped to [-1, 1)
           ((k + 1000 * id) * 2654435761 % 4294967296) / 4294967296.0     -- a hash in [0, 1)
    FROM k, shape)
SELECT device, 1709251200 + 600 * k,
       CAST((base + swing * (1 - u * u) * (1 - u * u) + noise * (2 * h - 1)) * 16 + 0.5 AS INTEGER) / 16.0
FROM x JOIN shape USING (device);

-- One row per device and step. rnn_sequence(t, temp) builds each device's series in time order (on any SQLite
-- version); the model comes from the device's row.
CREATE TABLE forecasts AS
WITH series AS (SELECT device, max(t) AS last_t, rnn_sequence(t, temp) AS seq FROM readings GROUP BY device)
SELECT d.device, f.step, s.last_t + 600 * f.step AS t, f.output AS temp
FROM devices AS d JOIN series AS s USING (device), rnn_forecast(d.model, s.seq, 24) AS f;

.mode box
.print Last reading of each device
SELECT device, strftime('%Y-%m-%d %H:%M', t, 'unixepoch') AS time, printf('%.2f', temp) AS temp
FROM readings WHERE (device, t) IN (SELECT device, max(t) FROM readings GROUP BY device) ORDER BY device;

.print Forecast, one column per device
SELECT step, strftime('%H:%M', t, 'unixepoch') AS time,
       printf('%.2f', max(temp) FILTER (WHERE device = 'cold-a1')) AS "cold-a1",
       printf('%.2f', max(temp) FILTER (WHERE device = 'hot-a1')) AS "hot-a1",
       printf('%.2f', max(temp) FILTER (WHERE device = 'hot-b2')) AS "hot-b2"
FROM forecasts GROUP BY step, t ORDER BY step;
