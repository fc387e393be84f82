# The loss curves of sql/train_long_memory.sql: a tanh RNN, an LSTM and a GRU asked to remember the first of 80
# values. `make lesson` runs it; by hand, from the repository root:
#     sqlite3 lesson.db < sql/train_long_memory.sql && gnuplot sql/train_long_memory.gp    # writes lesson.png
#     gnuplot -e "db='other.db'; out='chart.png'" sql/train_long_memory.gp
# Needs gnuplot (Debian: gnuplot-nox) and the sqlite3 shell; reads the table curves(cell, epoch, train_loss,
# val_loss) of the database.

if (!exists("db")) db = "lesson.db"
if (!exists("out")) out = "lesson.png"
if (!exists("source")) source = "rnn_train"

rows(sql) = sprintf("< sqlite3 -separator ' ' %s \"%s\"", db, sql)
curve(cell, col) = rows(sprintf("SELECT epoch, %s FROM curves WHERE cell = '%s' ORDER BY epoch", col, cell))

set terminal pngcairo size 1000,560 font "DejaVu Sans,11" noenhanced
set output out
set title sprintf("Remember the first of 80 values through noise (%s, clip 1.0, Adam lr 0.01)", source) \
    font "DejaVu Sans,13"
set xlabel "epoch"
set ylabel "MSE (standardised; 1 = knows nothing)"
set logscale y
set yrange [0.00005:2]
set format y "%g"
set grid lc rgb "#dddddd"
set key bottom left box opaque
plot curve("rnn_tanh", "val_loss") using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb "#e41a1c" title "tanh RNN, validation", \
     curve("rnn_tanh", "train_loss") using 1:2 with lines lw 1 dt 2 lc rgb "#e41a1c" title "tanh RNN, training", \
     curve("lstm", "val_loss") using 1:2 with linespoints lw 2 pt 5 ps 0.6 lc rgb "#377eb8" title "LSTM, validation", \
     curve("lstm", "train_loss") using 1:2 with lines lw 1 dt 2 lc rgb "#377eb8" title "LSTM, training", \
     curve("gru", "val_loss") using 1:2 with linespoints lw 2 pt 9 ps 0.7 lc rgb "#4daf4a" title "GRU, validation", \
     curve("gru", "train_loss") using 1:2 with lines lw 1 dt 2 lc rgb "#4daf4a" title "GRU, training"
