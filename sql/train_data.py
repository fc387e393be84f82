#!/usr/bin/python3
"""Write the real-data tables of README "Training" (issue 14): statsmodels' sunspots and co2 datasets as SQL.

Re-run from the repository root (needs Debian's python3-statsmodels; the output is committed, so the tests and
examples do not need statsmodels):   /usr/bin/python3 sql/train_data.py

Writes sql/data/sunspots.sql and sql/data/co2.sql: each a CREATE TABLE and its INSERTs, loadable with
`.read sql/data/sunspots.sql` in the sqlite3 shell or executescript in Python.

  * sunspots(series TEXT, year INTEGER, activity REAL): yearly mean sunspot numbers 1700-2008 (309 rows),
    statsmodels.datasets.sunspots, public domain (NOAA National Geophysical Data Center).
  * co2(series TEXT, month TEXT 'YYYY-MM', ppm REAL): atmospheric CO2 at Mauna Loa, March 1958 - December 2001,
    statsmodels.datasets.co2 (weekly flask samples, Keeling and Whorf, Scripps; public domain), reduced to
    monthly means as statsmodels' own examples do (co2.resample("MS").mean()); the few months without any
    sample are filled by linear interpolation between their neighbours (rnn_train refuses NULLs).
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data")


def g(v):
    return "%.10g" % v


def write(out, name, header, create, rows):
    path = os.path.join(out, name + ".sql")
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join("-- " + line + "\n" for line in header))
        f.write(create + "\n")
        f.write("INSERT INTO %s VALUES\n" % name)
        f.write(",\n".join("(" + ", ".join(r) + ")" for r in rows) + ";\n")
    return path, len(rows)


def main(out=OUT):
    """Write both files into out; [(path, rows)]."""
    import statsmodels.datasets as ds
    os.makedirs(out, exist_ok=True)
    done = []
    s = ds.sunspots.load_pandas().data
    done.append(write(out, "sunspots", [
        "Yearly mean sunspot numbers 1700-2008: statsmodels.datasets.sunspots (Debian python3-statsmodels).",
        "Source: NOAA National Geophysical Data Center, http://www.ngdc.noaa.gov/stp/solar/solarda3.html;",
        "public domain (statsmodels: \"This data is public domain.\"). Written by sql/train_data.py.",
    ], "CREATE TABLE sunspots(series TEXT, year INTEGER, activity REAL, PRIMARY KEY(series, year));",
        [("'sunspots'", str(int(y)), g(a)) for y, a in zip(s["YEAR"], s["SUNACTIVITY"])]))
    c = ds.co2.load_pandas().data["co2"].resample("MS").mean()
    missing = int(c.isna().sum())
    c = c.interpolate()
    done.append(write(out, "co2", [
        "Atmospheric CO2 (ppm) at Mauna Loa, monthly means of weekly flask samples, 1958-03 to 2001-12:",
        "statsmodels.datasets.co2 (Debian python3-statsmodels), reduced with resample('MS').mean();",
        "%d months without a sample are linearly interpolated. Source: Keeling, C.D. and T.P. Whorf, Scripps" % missing,
        "Institution of Oceanography (CDIAC, http://cdiac.ornl.gov/trends/co2/sio-keel-flask/"
        "sio-keel-flaskmlo_c.html);",
        "public domain (statsmodels: \"This is public domain.\"). Written by sql/train_data.py.",
    ], "CREATE TABLE co2(series TEXT, month TEXT, ppm REAL, PRIMARY KEY(series, month));",
        [("'co2'", "'%s'" % d.strftime("%Y-%m"), g(v)) for d, v in c.items()]))
    return done


if __name__ == "__main__":
    for path, n in main():
        print("%s: %d rows" % (os.path.relpath(path, os.path.dirname(HERE)), n))
