#!/usr/bin/env python3
"""Dump the result tables of an opnet database as sorted CSV, to compare two closes.

    scripts/compare-tables.py DB_URL OUT_DIR     # dump
    scripts/compare-tables.py --diff DIR_A DIR_B # per table: equal, or the differing rows

DB_URL is `sqlite://PATH` or `postgres://…` (psql on PATH). Columns that name a run or
a wall-clock time (run_id, *_at) are left out, so two runs of the same close on the
same data dump byte-identically. Used for "results identical to the cent" checks of
refactors and speed-ups (docs/build.md).
"""
import csv, os, sqlite3, subprocess, sys

TABLES = [
    "payout_statements", "payout_lines", "reconciliation_exceptions", "operator_tiers",
    "exclusivity_checks", "operator_metrics", "network_health",
    "operator_scorecards", "equity_eligibility", "lead_assignments", "email_outbox",
]
# Run ids, wall-clock times and whole message bodies (they carry a Date header) differ
# between two runs of the same close; everything else must not.
SKIP = {"run_id", "body", "claimed_by"}


def columns_sqlite(con, table):
    return [r[1] for r in con.execute(f"PRAGMA table_info({table})")]


def dump(url, out):
    os.makedirs(out, exist_ok=True)
    if url.startswith("sqlite:"):
        path = url[len("sqlite://"):] if url.startswith("sqlite://") else url[len("sqlite:"):]
        path = path.split("?")[0]
        con = sqlite3.connect(path)
        for t in TABLES:
            cols = [c for c in columns_sqlite(con, t) if c not in SKIP and not c.endswith("_at")] if con.execute(
                "SELECT 1 FROM sqlite_master WHERE name = ?", (t,)).fetchone() else []
            if not cols:
                continue
            rows = con.execute(f"SELECT {', '.join(cols)} FROM {t}").fetchall()
            write(out, t, cols, rows)
    else:
        for t in TABLES:
            q = ("SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns "
                 f"WHERE table_name = '{t}'")
            cols = subprocess.run(["psql", url, "-Atc", q], capture_output=True, text=True, check=True).stdout.strip()
            cols = [c for c in cols.split(",") if c and c not in SKIP and not c.endswith("_at")]
            if not cols:
                continue
            res = subprocess.run(["psql", url, "-Atc", f"COPY (SELECT {', '.join(cols)} FROM {t}) TO STDOUT WITH CSV"],
                                 capture_output=True, text=True, check=True).stdout
            rows = list(csv.reader(res.splitlines()))
            write(out, t, cols, rows)


def norm(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    if v in ("t", "f"):
        return {"t": "1", "f": "0"}[v]
    return str(v)


def write(out, table, cols, rows):
    rows = sorted([norm(v) for v in r] for r in rows)
    with open(os.path.join(out, f"{table}.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(rows)
    print(f"{table}: {len(rows)} rows")


def diff(a, b):
    same = True
    for t in TABLES:
        pa, pb = os.path.join(a, f"{t}.csv"), os.path.join(b, f"{t}.csv")
        if not (os.path.exists(pa) or os.path.exists(pb)):
            continue
        ra = open(pa).read().splitlines() if os.path.exists(pa) else []
        rb = open(pb).read().splitlines() if os.path.exists(pb) else []
        if ra == rb:
            print(f"{t}: identical ({max(len(ra) - 1, 0)} rows)")
            continue
        same = False
        sa, sb = set(ra[1:]), set(rb[1:])
        print(f"{t}: DIFFERENT — {len(sa - sb)} only in A, {len(sb - sa)} only in B (header A={ra[:1]} B={rb[:1]})")
        for r in sorted(sa - sb)[:15]:
            print(f"  A {r}")
        for r in sorted(sb - sa)[:15]:
            print(f"  B {r}")
    return same


if __name__ == "__main__":
    if sys.argv[1] == "--diff":
        sys.exit(0 if diff(sys.argv[2], sys.argv[3]) else 1)
    dump(sys.argv[1], sys.argv[2])
