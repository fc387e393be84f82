// sqlite-rnn in Node: better-sqlite3 12 (which bundles its own, newer SQLite) loads rnn.so and runs it.
//
// Run by tests/test_node.py (`make node-test`, which does the npm install first), or by hand from the repository root:
//   (cd tests/node && npm install) && node tests/node/test.mjs
// The extension is ../../rnn relative to this file, or $RNN_EXT (as tests/rnnlib.py).
//
// What it asserts:
//  1. loadExtension() works and rnn_version() answers; the bundled SQLite is >= 3.44.
//  2. A window query (PARTITION BY device ORDER BY t) gives, at each device's last row, the same number as the
//     3.44+ ordered aggregate rnn_predict('room_temp', temp ORDER BY t) and as rnn_eval over rnn_sequence(),
//     with rows inserted out of order and a NULL reading (skipped by all three).
//  3. The ordered aggregate honours its ORDER BY (DESC gives another answer, equal to the window over t DESC).
//  4. The demo model's README value: rnn_eval('room_temp', '[18.4, 18.5, 18.5, 25.0]') rounds to 21.926.
//  5. BLOBs come back as Buffers (rnn_hidden: 16 float32), table-valued rnn_forecast works, and an SQL error
//     from the extension reaches JavaScript with its message.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const ext = process.env.RNN_EXT || join(root, "rnn");

function open() {
  const db = new Database(":memory:");
  db.loadExtension(ext);
  db.exec(`CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL);
           CREATE TABLE readings(device TEXT, t INTEGER, temp REAL, PRIMARY KEY(device, t));`);
  db.prepare("INSERT INTO rnn_models VALUES (?, ?)")
    .run("room_temp", readFileSync(join(root, "sql", "demo_model.safetensors")));
  // out of t order on purpose, and a NULL reading
  const rows = [
    ["hot-a1", 1200, 29.8], ["cold-a1", 600, 18.5], ["hot-a1", 0, 29.5], ["cold-a1", 1800, 25.0],
    ["hot-a1", 2400, null], ["cold-a1", 0, 18.4], ["hot-a1", 600, 29.6], ["cold-a1", 1200, 18.5],
    ["hot-a1", 3000, 30.6], ["hot-a1", 1800, 30.1],
  ];
  const ins = db.prepare("INSERT INTO readings VALUES (?, ?, ?)");
  db.transaction(() => rows.forEach((r) => ins.run(...r)))();
  return db;
}

test("loads and reports its version on a newer SQLite", () => {
  const db = open();
  assert.equal(db.prepare("SELECT rnn_version()").pluck().get(), "0.1.0");
  const [maj, min] = db.prepare("SELECT sqlite_version()").pluck().get().split(".").map(Number);
  assert.ok(maj > 3 || (maj === 3 && min >= 44), "better-sqlite3 12 bundles SQLite >= 3.44");
});

test("window query equals the ordered aggregate and rnn_eval(rnn_sequence())", () => {
  const db = open();
  const windowed = db.prepare(`
    SELECT device, t, rnn_predict('room_temp', temp) OVER (PARTITION BY device ORDER BY t) AS next_temp
    FROM readings ORDER BY device, t`).all();
  assert.equal(windowed.length, 10);
  const last = {};
  for (const r of windowed) last[r.device] = r.next_temp;
  const ordered = db.prepare(`
    SELECT device, rnn_predict('room_temp', temp ORDER BY t) AS next_temp,
           rnn_eval('room_temp', rnn_sequence(t, temp)) AS evaluated
    FROM readings GROUP BY device ORDER BY device`).all();
  assert.deepEqual(ordered.map((r) => r.device), ["cold-a1", "hot-a1"]);
  for (const r of ordered) {
    assert.equal(typeof r.next_temp, "number");
    assert.equal(r.next_temp, last[r.device], r.device);
    assert.equal(r.evaluated, last[r.device], r.device);
  }
  // the README's numbers for the same readings
  assert.deepEqual(ordered.map((r) => Math.round(r.next_temp * 1000) / 1000), [21.926, 30.269]);
  // the NULL row (hot-a1, t=2400) repeats the previous output: the state did not advance
  const hot = windowed.filter((r) => r.device === "hot-a1");
  assert.equal(hot[4].t, 2400);
  assert.equal(hot[4].next_temp, hot[3].next_temp);
});

test("the ordered aggregate honours its ORDER BY", () => {
  const db = open();
  const one = (sql) => db.prepare(sql).pluck().get();
  const asc = one("SELECT rnn_predict('room_temp', temp ORDER BY t) FROM readings WHERE device = 'cold-a1'");
  const desc = one("SELECT rnn_predict('room_temp', temp ORDER BY t DESC) FROM readings WHERE device = 'cold-a1'");
  const windowDesc = one(`
    SELECT rnn_predict('room_temp', temp)
           OVER (ORDER BY t DESC ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
    FROM readings WHERE device = 'cold-a1' LIMIT 1`);
  assert.notEqual(asc, desc);
  assert.equal(desc, windowDesc);
});

test("scalar, BLOB and table-valued results, and errors", () => {
  const db = open();
  const v = db.prepare("SELECT rnn_eval('room_temp', '[18.4, 18.5, 18.5, 25.0]')").pluck().get();
  assert.equal(Math.round(v * 1000) / 1000, 21.926);
  const hidden = db.prepare(`
    SELECT rnn_hidden('room_temp', temp ORDER BY t) FROM readings WHERE device = 'hot-a1'`).pluck().get();
  assert.ok(Buffer.isBuffer(hidden));
  assert.equal(hidden.length, 64);
  const forecast = db.prepare(`
    SELECT step, output FROM rnn_forecast('room_temp',
      (SELECT rnn_sequence(t, temp) FROM readings WHERE device = 'hot-a1'), 3)`).all();
  assert.deepEqual(forecast.map((r) => [r.step, Math.round(r.output * 100) / 100]),
                   [[1, 30.27], [2, 30.32], [3, 30.37]]);
  assert.throws(() => db.prepare("SELECT rnn_predict('room_temp', temp, temp ORDER BY t) FROM readings").get(),
                { name: "SqliteError", message: "rnn_predict(): model expects 1 feature, got 2" });
});
