-- The table where sqlite-rnn looks models up by name.
--
-- Every `model` argument (rnn_predict, rnn_hidden, rnn_eval, rnn_classify, rnn_steps, rnn_forecast, rnn_info)
-- takes either a model BLOB or the TEXT name of a row of this table. Loading the extension never creates it:
-- run this file once (`sqlite3 my.db < sql/rnn_models.sql`, or `.read sql/rnn_models.sql` in the shell).
--
-- `model` is a safetensors file, exactly what `safetensors.torch.save(module.state_dict(), metadata=...)`
-- writes, stored as a BLOB. In the sqlite3 shell:
--     INSERT INTO rnn_models(name, model) VALUES ('room_temp', readfile('sql/demo_model.safetensors'));
-- Extra columns (a description, a training date, a version) are allowed after these two.
--
-- Use the name, not the BLOB, in window queries: SQLite copies every argument of a window function into its
-- row buffers for every row, so a BLOB argument costs its whole size per row. The name costs a few bytes,
-- and parsed models are cached per connection by content, so an UPDATE of a row here is seen at once.
CREATE TABLE IF NOT EXISTS rnn_models(
  name  TEXT PRIMARY KEY,
  model BLOB NOT NULL
);
