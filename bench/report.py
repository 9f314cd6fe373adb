#!/usr/bin/env python3
"""bench/report.py: the benchmark table, from bench/run.sh's results file.

Usage: report.py RESULTS_TSV [SUMMARY_TSV]

Each line of RESULTS_TSV (tab-separated) describes one pgbench run:
    key  label  clients  tps  log_prefix  status  wal_bytes  xacts  cutoff  round
key names the workload (the comparisons below use it), label is what the
table shows, tps is pgbench's own figure, log_prefix names the per-transaction
log files (pgbench -l --log-prefix: PREFIX.<pid>[.<thread>]), status is "ok"
or why the run is suspect, wal_bytes is the WAL the run wrote, xacts the
transactions pgbench counted, cutoff (epoch seconds, or "-") restricts the
row to transactions that ended after it (the sold-out phase of a sell-out),
round numbers the rounds of BENCH_ROUNDS.

With several rounds, a workload's line shows the median of its rounds' tps,
the percentiles of all its rounds' transactions together, and each ratio is
the median of the ratios taken within one round (workload and baseline ran
minutes apart at most), followed by their range.

A key may end in "@build" (bench/ab.sh runs the same workloads under two
builds of the module): it is then compared with the baselines measured under
the same build, and a workload "@after" also with itself "@before".

Latency percentiles are nearest-rank over every logged transaction: the log's
third field is the transaction's latency in microseconds.

With SUMMARY_TSV, the table is also written there, one line per workload and
client count, for bench/plot.sh:
    key  label  clients  tps  p50_ms  p95_ms  p99_ms  wal_per_tx  ratios
where ratios is "baseline:ratio:target" items joined by commas (the
baseline as the table names it; target "-" when there is none).
"""
import glob
import math
import statistics
import sys

# workload key -> [(baseline key, target ratio or None)], same client count
COMPARE = {
    "validate_sql": [("select1", None)],
    "validate": [("select1", 0.50), ("validate_sql", 1.00)],
    "issue_fcfs": [("issue_counter", 3.00)],
    "issue_small": [("issue_counter", None)],
    "issue_small_soldout": [("select1", None)],
    "reserve_confirm": [("simple_update", 0.60)],
}
SHORT = {
    "select1": "SELECT 1",
    "simple_update": "simple-update",
    "validate_sql": "sql validate",
    "issue_counter": "counter",
}


def latencies(prefix, cutoff):
    """latencies in ms of the logged transactions (ended after cutoff)"""
    out = []
    for path in glob.glob(glob.escape(prefix) + ".*"):
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) < 6 or not p[2].isdigit():
                    continue  # skipped or failed transactions carry no latency
                if cutoff is not None and int(p[4]) + int(p[5]) / 1e6 < cutoff:
                    continue
                out.append((int(p[2]), int(p[4]) + int(p[5]) / 1e6))
    return out


def pct(sorted_ms, q):
    if not sorted_ms:
        return float("nan")
    k = max(0, math.ceil(q / 100.0 * len(sorted_ms)) - 1)
    return sorted_ms[k]


def fmt_ms(v):
    if math.isnan(v):
        return "-"
    return "%.3f" % v if v < 1 else ("%.2f" % v if v < 100 else "%.0f" % v)


def main():
    rows = []
    with open(sys.argv[1]) as f:
        for line in f:
            if not line.strip():
                continue
            key, label, clients, tps, prefix, status, wal, xacts, cutoff, rnd = \
                line.rstrip("\n").split("\t")
            cut = None if cutoff == "-" else float(cutoff)
            lat = latencies(prefix, cut)
            ms = sorted(l / 1000.0 for l, _ in lat)
            tps_v = float(tps) if tps not in ("", "-") else float("nan")
            if cut is not None:
                # the phase after cutoff: its own rate, from the log
                ends = [e for _, e in lat]
                span = (max(ends) - cut) if ends else 0
                tps_v = len(ends) / span if span > 0 else float("nan")
            xacts_v = int(xacts) if xacts.isdigit() else 0
            rows.append(dict(key=key, label=label, clients=int(clients), tps=tps_v,
                             ms=ms, status=status, wal=int(wal) if wal.isdigit() else None,
                             xacts=xacts_v, cut=cut, round=int(rnd)))

    # one line per workload and client count, over its rounds
    groups = {}
    for r in rows:
        groups.setdefault((r["key"], r["clients"]), []).append(r)
    by_round = {(r["key"], r["clients"], r["round"]): r for r in rows}
    lines = []
    for (key, clients), rs in groups.items():
        ms = sorted(m for r in rs for m in r["ms"])
        tpss = [r["tps"] for r in rs if not math.isnan(r["tps"])]
        wal = [r for r in rs if r["wal"] is not None and r["xacts"] and r["cut"] is None]
        bad = [r["status"] for r in rs if r["status"] != "ok"]
        lines.append(dict(key=key, label=rs[0]["label"], clients=clients, rounds=rs,
                          tps=statistics.median(tpss) if tpss else float("nan"),
                          p50=pct(ms, 50), p95=pct(ms, 95), p99=pct(ms, 99),
                          wal_tx=(sum(r["wal"] for r in wal) / sum(r["xacts"] for r in wal))
                          if wal else None,
                          status=bad[0] if bad else "ok"))
    header = ("workload", "clients", "tps", "p50 ms", "p95 ms", "p99 ms", "WAL B/tx",
              "ratio vs baseline (target)")
    table = []
    summary = []
    for r in lines:
        notes = []
        ratio_items = []
        key, _, build = r["key"].partition("@")
        compare = [(b + ("@" + build if build else ""), t) for b, t in COMPARE.get(key, [])]
        if build == "after":
            compare.append((key + "@before", None))
        for base, target in compare:
            ratios = []
            for w in r["rounds"]:
                b = by_round.get((base, r["clients"], w["round"]))
                if b is not None and b["tps"] and not math.isnan(b["tps"]) \
                        and not math.isnan(w["tps"]):
                    ratios.append(w["tps"] / b["tps"])
            if not ratios:
                continue
            ratio = statistics.median(ratios)
            name, _, bbuild = base.partition("@")
            name = SHORT.get(name, name) + (" " + bbuild if bbuild else "")
            ratio_items.append("%s:%.3f:%s" % (name, ratio, "-" if target is None else "%.2f" % target))
            s = "%.2fx %s" % (ratio, name)
            if len(ratios) > 1:
                s += " [%.2f-%.2f]" % (min(ratios), max(ratios))
            if target is not None:
                s += " (>=%.2f %s)" % (target, "met" if ratio >= target else "NOT met")
            notes.append(s)
        if r["status"] != "ok":
            notes.append("[%s]" % r["status"])
        summary.append("\t".join([r["key"], r["label"], str(r["clients"]),
                                  "%.1f" % r["tps"], "%.3f" % r["p50"], "%.3f" % r["p95"],
                                  "%.3f" % r["p99"],
                                  "-" if r["wal_tx"] is None else "%.0f" % r["wal_tx"],
                                  ",".join(ratio_items) or "-"]))
        table.append((r["label"], str(r["clients"]),
                      "-" if math.isnan(r["tps"]) else "%.0f" % r["tps"],
                      fmt_ms(r["p50"]), fmt_ms(r["p95"]), fmt_ms(r["p99"]),
                      "-" if r["wal_tx"] is None else "%.0f" % r["wal_tx"],
                      "; ".join(notes) or "-"))
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    right = {1, 2, 3, 4, 5, 6}

    def line(cells):
        return "  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i])
                         for i, c in enumerate(cells)).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for t in table:
        print(line(t))
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            f.write("".join(s + "\n" for s in summary))


if __name__ == "__main__":
    main()
