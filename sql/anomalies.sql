-- Per-device anomaly detection: each device is scored by the model assigned to it, along its own readings.
--
-- Run from the repository root (after `make`):   sqlite3 < sql/anomalies.sql
-- tests/test_sql_examples.py runs it and compares the output with sql/expected/anomalies.out.
--
-- The idea: a model that forecasts a device's next reading from its readings so far (here the demo GRU of
-- sql/demo_model.safetensors, trained by sql/train_demo.py on simulated server-room temperatures) is surprised
-- by faults. A reading's error is its distance from the forecast made one reading earlier; a reading is flagged
-- when its error is over 1 C and over 4 times its device's mean error (each device has its own noise level).
.load ./rnn
.bail on

-- Models by name, and which model scores which device. Both rows hold the demo model here; in practice each
-- would be trained on its own devices. A device's model must be the same on all of its rows (one model per
-- window partition).
CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL);
INSERT INTO rnn_models VALUES ('cold_aisle', readfile('sql/demo_model.safetensors')),
                              ('hot_aisle', readfile('sql/demo_model.safetensors'));
CREATE TABLE devices(device TEXT PRIMARY KEY, model TEXT NOT NULL REFERENCES rnn_models(name));
INSERT INTO devices VALUES ('cold-a1', 'cold_aisle'), ('cold-b1', 'cold_aisle'),
                           ('hot-a1', 'hot_aisle'), ('hot-b2', 'hot_aisle');

-- Three days of readings every 10 minutes from 2024-03-01 00:00 UTC: a daily cycle peaking in the afternoon, a
-- per-device level and swing, and a deterministic noise (a multiplicative hash of the reading number), rounded
-- to 1/16 C like a DS18B20.
CREATE TABLE readings(device TEXT, t INTEGER, temp REAL, PRIMARY KEY(device, t));
INSERT INTO readings
WITH RECURSIVE k(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM k WHERE k < 3 * 144 - 1),
  shape(id, device, base, swing, noise) AS (VALUES
    (1, 'cold-a1', 18.5, 1.25, 0.25), (2, 'cold-b1', 18.0, 1.0, 0.3125), (3, 'hot-a1', 29.0, 3.0, 0.375),
    (4, 'hot-b2', 31.0, 4.0, 0.5)),
  x(device, k, u, h) AS (
    SELECT device, k, (2 * ((10 * k + 1260) % 1440) - 1440) / 1440.0,   -- time of day mapped to [-1, 1)
           ((k + 1000 * id) * 2654435761 % 4294967296) / 4294967296.0    -- a hash in [0, 1)
    FROM k, shape)
SELECT device, 1709251200 + 600 * k,
       CAST((base + swing * (1 - u * u) * (1 - u * u) + noise * (2 * h - 1)) * 16 + 0.5 AS INTEGER) / 16.0
FROM x JOIN shape USING (device);

-- The faults to find: a spike, a dip, and a step up of 4 C that lasts (a fan dies on the last morning).
UPDATE readings SET temp = temp + 6 WHERE device = 'hot-a1' AND t = unixepoch('2024-03-02 13:10');
UPDATE readings SET temp = temp - 5 WHERE device = 'cold-b1' AND t = unixepoch('2024-03-01 04:00');
UPDATE readings SET temp = temp + 4 WHERE device = 'hot-b2' AND t >= unixepoch('2024-03-03 09:00');

-- Scoring: one window query. The model name comes from the device's row, so each partition runs its own model;
-- next_temp is the model's forecast after the device's readings so far (running frame: one GRU step per row).
CREATE TABLE scored AS
SELECT device, t, temp, predicted, abs(temp - predicted) AS error
FROM (
  SELECT device, t, temp, lag(next_temp) OVER (PARTITION BY device ORDER BY t) AS predicted
  FROM (
    SELECT r.device, r.t, r.temp,
           rnn_predict(d.model, r.temp) OVER (PARTITION BY r.device ORDER BY r.t) AS next_temp
    FROM readings AS r JOIN devices AS d USING (device)));

.mode box
.print Per device: readings, mean error of the one-step forecast, readings flagged
SELECT device, model, count(*) AS readings, printf('%.3f', avg(error)) AS mean_error,
       sum(error > 1.0 AND error > 4 * (SELECT avg(error) FROM scored AS s WHERE s.device = scored.device))
         AS flagged
FROM scored JOIN devices USING (device) GROUP BY device ORDER BY device;

-- A fault is flagged where it starts, and so are the next reading or two while the model, which has taken the
-- odd reading in as input, catches up: back down after a spike or a dip, onto the new level after a step.
.print Flagged readings
SELECT device, strftime('%Y-%m-%d %H:%M', t, 'unixepoch') AS time, printf('%.2f', temp) AS reading,
       printf('%.2f', predicted) AS predicted, printf('%.2f', error) AS error
FROM scored
WHERE error > 1.0 AND error > 4 * (SELECT avg(error) FROM scored AS s WHERE s.device = scored.device)
ORDER BY device, t;
