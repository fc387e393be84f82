-- tests/cluster/workload.sql: the statements tests/cluster/run.sh sends through the dqlite cluster (by
-- tests/cluster/main.go) and tests/cluster/local.py runs on a local file, so both score the very same rows.
-- Each statement follows a "-- name: NAME" line; ? is bound by the runner (the model BLOB, the row count).

-- name: connection
-- Run first on every connection. The libdqlite of Debian 12 (1.11.1) answers "disk I/O error" when a transaction
-- must read back pages it spilled to the WAL and the WAL was empty when it began (right after a checkpoint):
-- canonical/dqlite issue 432, fixed upstream by pull request 445. Statements that write more than the page cache
-- holds (2 MB by default; 100,000 rows here) spill unless told not to: with cache_spill off, a transaction keeps
-- its pages in memory until it commits.
PRAGMA cache_spill = OFF

-- name: schema_models
CREATE TABLE IF NOT EXISTS rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL)

-- name: schema_readings
CREATE TABLE IF NOT EXISTS readings(id INTEGER PRIMARY KEY, device INTEGER NOT NULL, t INTEGER NOT NULL,
                                    temp REAL NOT NULL)

-- name: schema_index
CREATE INDEX IF NOT EXISTS readings_device_t ON readings(device, t)

-- name: schema_pred
CREATE TABLE IF NOT EXISTS pred(id INTEGER PRIMARY KEY, forecast REAL)

-- name: model
INSERT INTO rnn_models(name, model) VALUES ('room_temp', ?)

-- name: readings
-- 10 sensors read every 10 minutes, 18 to 31 C (the range the demo model was trained on).
INSERT INTO readings(id, device, t, temp)
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ? - 1)
SELECT i, i % 10, 1709251200 + (i / 10) * 600, 18.0 + (i % 10) + ((i * 7919) % 1000) / 250.0 FROM n

-- name: score
SELECT id, rnn_predict('room_temp', temp) OVER (PARTITION BY device ORDER BY t) FROM readings ORDER BY id

-- name: clear_pred
DELETE FROM pred

-- name: insert_pred
INSERT INTO pred(id, forecast)
SELECT id, rnn_predict('room_temp', temp) OVER (PARTITION BY device ORDER BY t) FROM readings

-- name: pred
SELECT id, forecast FROM pred ORDER BY id

-- name: kernel
SELECT json_extract(rnn_info('room_temp'), '$.kernel')
