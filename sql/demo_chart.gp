# The demo as a picture: for each fault that sql/demo.sql injects (shaded), the sensor's readings from 12 hours
# before to 18 hours after its start, the GRU's forecast of each reading made 10 minutes earlier, and, circled,
# the readings the demo reports as most surprising.
#
# After `make demo` (which leaves demo.db), from the repository root:
#     gnuplot sql/demo_chart.gp                                  # writes demo.png
#     gnuplot -e "db='other.db'; out='chart.png'" sql/demo_chart.gp
# Needs gnuplot (Debian: apt-get install gnuplot-nox) and the sqlite3 shell; reads the tables faults and scored
# of demo.db, and flags the same 10 readings as the demo's report (largest error first).
# tests/test_demo_chart.py draws it from a fresh demo database and checks the PNG.

if (!exists("db")) db = "demo.db"
if (!exists("out")) out = "demo.png"
top = 10                                   # how many of the most surprising readings to flag, as the demo

# A query's rows, space-separated, as a gnuplot data source; a query's single value as a string.
rows(sql) = sprintf("< sqlite3 -separator ' ' %s \"%s\"", db, sql)
one(sql) = system(sprintf("sqlite3 %s \"%s\"", db, sql))

faults = int(one("SELECT count(*) FROM faults"))

set terminal pngcairo size 1400,900 font "DejaVu Sans,10"
set output out
set multiplot layout 2,2 title sprintf("sqlite-rnn demo: the injected faults (shaded), each reading and the GRU's "\
    ."forecast of it made 10 minutes earlier; circled: the %d most surprising readings", top) font "DejaVu Sans,12"
set xdata time
set timefmt "%s"
set format x "%d %b\n%H:%M"
set ylabel "°C"
set grid lc rgb "#dddddd"
set key outside bottom center horizontal maxrows 1 samplen 2
set offsets 0, 0, graph 0.06, graph 0.06

do for [i = 0:faults - 1] {
    fault = sprintf("FROM faults ORDER BY t_from LIMIT 1 OFFSET %d", i)
    dev = one("SELECT device ".fault)
    what = one("SELECT what ".fault)
    t_from = int(one("SELECT t_from ".fault))
    t_to = int(one("SELECT t_to ".fault))
    lo = t_from - 12 * 3600
    hi = t_from + 18 * 3600
    range = sprintf("device = '%s' AND t BETWEEN %d AND %d", dev, lo, hi)
    set title sprintf("%s: %s", dev, what)
    set xrange [lo:hi]
    set object 1 rectangle from t_from - 300, graph 0 to (t_to < hi ? t_to : hi) + 300, graph 1 \
        fc rgb "#e41a1c" fs transparent solid 0.12 noborder behind
    plot rows("SELECT t, temp FROM scored WHERE ".range." ORDER BY t") \
             using 1:2 with lines lw 1.5 lc rgb "#377eb8" title "reading", \
         rows("SELECT t, predicted FROM scored WHERE predicted IS NOT NULL AND ".range." ORDER BY t") \
             using 1:2 with lines lw 1.5 dt 2 lc rgb "#ff7f00" title "forecast", \
         rows(sprintf("SELECT t, temp FROM (SELECT * FROM scored ORDER BY error DESC LIMIT %d) WHERE ", top).range) \
             using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb "#e41a1c" title "flagged", \
         NaN with boxes fs transparent solid 0.12 noborder lc rgb "#e41a1c" title "fault"
    unset object 1
}
unset multiplot
