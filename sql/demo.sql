-- sqlite-rnn demo: find the odd readings of a month of server-room temperatures with a small GRU.
--
-- Run from the repository root:   make demo
-- (or: make && rm -f demo.db && sqlite3 demo.db < sql/demo.sql)
--
-- What happens:
--   1. 8 simulated sensors (4 in the cold aisle, 4 in the hot aisle) read the temperature every 10 minutes
--      for the 30 days of March 2024: a daily cycle, an offset per sensor, a slow drift, sensor noise, and
--      a resolution of 1/16 degree like a DS18B20. Then four faults are injected at known places.
--   2. The model sql/demo_model.safetensors (a GRU with 16 units and a linear head, trained by
--      sql/train_demo.py on other simulated months of the same sensors) is stored in rnn_models.
--   3. rnn_predict() runs the GRU along each sensor's readings, in time order, in one window query:
--      at every row it gives the model's forecast of the NEXT reading. A reading's surprise is how far it
--      is from the forecast made one reading earlier.
--   4. The most surprising readings are printed: the injected faults should be at the top.
-- Afterwards demo.db holds the tables readings, faults, rnn_models and scored, to explore.
--
-- sql/train_demo.py and tests/test_demo.py run this file through Python's sqlite3: they skip the lines
-- that start with '.', find the sections by their '-- == N.' headings, and supply readfile(). Keep that.

.bail on
.load ./rnn

-- == 1. The data ==========================================================================================

DROP TABLE IF EXISTS readings;
DROP TABLE IF EXISTS faults;
DROP TABLE IF EXISTS scored;

CREATE TABLE readings(device TEXT, t INTEGER, temp REAL, PRIMARY KEY(device, t));   -- t: unix time, UTC

-- SQLite's random() cannot be seeded, so the noise comes from a linear congruential generator
-- (the classic C rand() constants) stepped twice per row inside the recursive CTE; the sum of two uniform
-- draws gives a triangular noise in [-noise, +noise]. Everything is integer or exactly representable
-- arithmetic, so sql/train_demo.py regenerates the very same numbers in Python.
-- The daily cycle is a smooth bump (1 - u^2)^2 over the day, lowest at night and highest around
-- 15:00 plus the sensor's lag (hot-aisle air follows the servers' load).
INSERT INTO readings(device, t, temp)
WITH RECURSIVE
  sensor(id, device, base, amp, drift, lag, noise) AS (VALUES
    -- id, name,    base C, daily swing C, drift over the month C, lag min, noise C
    (0, 'cold-a1',  18.5,   1.25,           0.5,                   0,      0.25),
    (1, 'cold-a2',  19.0,   1.5,           -0.25,                  20,     0.25),
    (2, 'cold-b1',  18.0,   1.0,            0.75,                  40,     0.3125),
    (3, 'cold-b2',  19.5,   1.75,           0.0,                   10,     0.25),
    (4, 'hot-a1',   29.0,   3.0,            1.0,                   60,     0.375),
    (5, 'hot-a2',   30.5,   3.5,            0.5,                   50,     0.375),
    (6, 'hot-b1',   28.0,   2.5,           -0.5,                   90,     0.375),
    (7, 'hot-b2',   31.0,   4.0,            0.75,                  70,     0.5)
  ),
  -- n = 0 .. 8*4320-1 walks sensor by sensor (4320 readings = 30 days every 10 minutes);
  -- r1, r2 are two successive states of the generator, each in [0, 2^31).
  lcg(n, r1, r2) AS (
    SELECT 0, 20240301, (20240301 * 1103515245 + 12345) % 2147483648
    UNION ALL
    SELECT n + 1,
           (r2 * 1103515245 + 12345) % 2147483648,
           (((r2 * 1103515245 + 12345) % 2147483648) * 1103515245 + 12345) % 2147483648
    FROM lcg WHERE n < 8 * 4320 - 1
  ),
  step(id, k, u, r1, r2) AS (   -- k: reading number of the sensor; u: time of day mapped to [-1, 1)
    SELECT n / 4320, n % 4320, (2 * ((10 * (n % 4320) + 1260 - lag) % 1440) - 1440) / 1440.0, r1, r2
    FROM lcg JOIN sensor ON sensor.id = n / 4320
  )
SELECT device,
       1709251200 + 600 * k,                                   -- 2024-03-01 00:00 UTC + k * 10 minutes
       CAST((base + amp * (1.0 - u * u) * (1.0 - u * u) + drift * (k / 4320.0)
             + noise * ((r1 + r2) / 2147483648.0 - 1.0)) * 16 + 0.5 AS INTEGER) / 16.0
FROM step JOIN sensor USING (id);

-- The faults. t_from .. t_to is inclusive; delta is added to the readings, or NULL for a stuck sensor,
-- which repeats its last good reading until it recovers.
CREATE TABLE faults(device TEXT, t_from INTEGER, t_to INTEGER, what TEXT, delta REAL);
INSERT INTO faults VALUES
  ('hot-a2',  unixepoch('2024-03-06 14:20'), unixepoch('2024-03-06 14:20'), 'spike +7.5',         7.5),
  ('cold-b1', unixepoch('2024-03-11 03:40'), unixepoch('2024-03-11 03:40'), 'dip -6',            -6.0),
  ('hot-b1',  unixepoch('2024-03-17 09:00'), unixepoch('2024-03-31 00:00'), 'step +4 (fan died)', 4.0),
  ('hot-b2',  unixepoch('2024-03-23 05:00'), unixepoch('2024-03-23 14:50'), 'stuck 05:00-14:50',  NULL);

UPDATE readings SET temp = temp + f.delta
FROM faults AS f
WHERE f.delta IS NOT NULL AND f.device = readings.device AND readings.t BETWEEN f.t_from AND f.t_to;

UPDATE readings SET temp = (SELECT r.temp FROM readings AS r WHERE r.device = f.device AND r.t = f.t_from - 600)
FROM faults AS f
WHERE f.delta IS NULL AND f.device = readings.device AND readings.t BETWEEN f.t_from AND f.t_to;

-- == 2. The model =========================================================================================

-- The schema of sql/rnn_models.sql; readfile() is the sqlite3 shell's.
CREATE TABLE IF NOT EXISTS rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL);
INSERT OR REPLACE INTO rnn_models VALUES ('room_temp', readfile('sql/demo_model.safetensors'));

-- == 3. Scoring ===========================================================================================

-- next_temp: the model's forecast of the next reading, after the readings of this sensor so far (the
-- running frame ROWS UNBOUNDED PRECEDING advances the GRU one step per row).
-- predicted: the forecast made one reading earlier, for this reading; error: how far off it was.
.print Scoring every reading: one window query, the GRU run along each sensor's readings in time order.
.timer on
CREATE TABLE scored AS
SELECT device, t, temp,
       lag(next_temp) OVER w AS predicted,
       abs(temp - lag(next_temp) OVER w) AS error
FROM (
  SELECT device, t, temp,
         rnn_predict('room_temp', temp) OVER (PARTITION BY device ORDER BY t ROWS UNBOUNDED PRECEDING) AS next_temp
  FROM readings
)
WINDOW w AS (PARTITION BY device ORDER BY t);
.timer off

-- == 4. Report ============================================================================================

.mode list
.headers off
SELECT printf('%d readings from %d sensors, %s to %s; mean error %.2f C.', count(*), count(DISTINCT device),
              strftime('%Y-%m-%d %H:%M', min(t), 'unixepoch'), strftime('%Y-%m-%d %H:%M', max(t), 'unixepoch'),
              avg(error))
FROM scored;

-- The 10 most surprising readings, with the injected fault they fall in or follow within the hour.
.print
.print The 10 most surprising readings (error: |reading - forecast made 10 minutes earlier|, in C):
.mode box
.headers on
SELECT s.device,
       strftime('%Y-%m-%d %H:%M', s.t, 'unixepoch') AS time,
       printf('%.2f', s.temp) AS reading,
       printf('%.2f', s.predicted) AS predicted,
       printf('%.2f', s.error) AS error,
       coalesce(f.what || CASE WHEN s.t > f.t_to THEN printf(', %d min after', (s.t - f.t_to) / 60) ELSE '' END,
                '') AS injected_fault
FROM (SELECT * FROM scored ORDER BY error DESC LIMIT 10) AS s
LEFT JOIN faults AS f ON f.device = s.device AND s.t BETWEEN f.t_from AND f.t_to + 3600
ORDER BY s.error DESC;
