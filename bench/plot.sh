#!/usr/bin/env bash
# bench/plot.sh: the benchmark's pictures, drawn by gnuplot from a saved run
# of bench/run.sh.  Run as root from the repo root:
#
#     BENCH_SAVE=docs/bench BENCH_ROUNDS=3 bash bench/run.sh
#     bash bench/plot.sh docs/bench
#
# Reads DIR/summary.tsv (bench/report.py's table, one line per workload and
# client count) and writes, beside it:
#
#   throughput.png  transactions per second of every workload and baseline,
#                   one bar per client count (log scale)
#   latency.png     p50, p95 and p99 latency at the largest client count
#                   (log scale)
#   ratios.png      each workload's ratio to its baseline beside the target
#                   the project set for it
#
# Installs Debian's gnuplot-nox if gnuplot is missing.  Figures only; the
# numbers are in DIR/report.txt.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

DIR=${1:?usage: bench/plot.sh DIR (holding summary.tsv from BENCH_SAVE=DIR bench/run.sh)}
[ -f "$DIR/summary.tsv" ] || { echo "$DIR/summary.tsv is missing" >&2; exit 2; }
if ! command -v gnuplot >/dev/null; then
	log "installing gnuplot-nox"
	apt-get update -qq
	apt_install gnuplot-nox
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# the data files gnuplot reads, from the summary
python3 - "$DIR/summary.tsv" "$TMP" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
out = sys.argv[2]
clients = sorted({int(r[2]) for r in rows})
labels = []
for r in rows:
    if r[1] not in labels:
        labels.append(r[1])
tps = {(r[1], int(r[2])): r[3] for r in rows}
with open(out + "/tps.dat", "w") as f:
    f.write("workload " + " ".join("c%d" % c for c in clients) + "\n")
    for l in labels:
        f.write('"%s" %s\n' % (l, " ".join(tps.get((l, c), "NaN") for c in clients)))
top = clients[-1]
with open(out + "/lat.dat", "w") as f:
    f.write("workload p50 p95 p99\n")
    for r in rows:
        if int(r[2]) == top:
            f.write('"%s" %s %s %s\n' % (r[1], r[4], r[5], r[6]))
with open(out + "/ratio.dat", "w") as f:
    for r in rows:
        if r[8] == "-":
            continue
        for item in r[8].split(","):
            base, ratio, target = item.rsplit(":", 2)
            if target == "-":
                continue
            name = r[1].replace("coupon.", "").replace(" pair", "").split(",")[0]
            f.write('"%s / %s, %s" %s %s\n' % (name, base, r[2], ratio, target))
with open(out + "/clients", "w") as f:
    f.write(" ".join(str(c) for c in clients) + "\n%d\n" % top)
PY
read -r -a CLIENTS <"$TMP/clients"
TOP=$(sed -n 2p "$TMP/clients")
NCOL=${#CLIENTS[@]}

gnuplot <<EOF
set terminal pngcairo size 1100,620 noenhanced font ",10"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set grid ytics
set key top right
set xtics rotate by -35 left
set logscale y
set bmargin 9
set rmargin 14

set output "$DIR/throughput.png"
set title "Throughput: transactions per second (log scale; pgbench -M prepared)"
set ylabel "tps"
plot for [i=2:$((NCOL + 1))] "$TMP/tps.dat" using i:xtic(1) title columnheader(i)

set output "$DIR/latency.png"
set title "Latency at $TOP clients: p50, p95, p99 in ms (log scale)"
set ylabel "ms"
plot for [i=2:4] "$TMP/lat.dat" using i:xtic(1) title columnheader(i)

unset logscale y
set output "$DIR/ratios.png"
set title "Ratio to the baseline at 8 and 32 clients, beside its target (higher is better)"
set ylabel "workload tps / baseline tps"
set yrange [0:*]
plot "$TMP/ratio.dat" using 2:xtic(1) title "measured", \
	 "" using 3 title "target"
EOF
echo "wrote $DIR/throughput.png $DIR/latency.png $DIR/ratios.png"
