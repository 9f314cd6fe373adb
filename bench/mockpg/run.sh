#!/bin/bash
# bench/mockpg/run.sh: load coupon-mockpg's confirm endpoint with wrk and
# print requests/s and latency percentiles, without and with --journal.
# Prints figures only; it never asserts a time (benchmarks are not tests).
#
#   bench/mockpg/run.sh        (it runs `make mockpg` first)
#
# Environment: DURATION (seconds per run, default 10), CONNECTIONS (default
# 64), WRK_THREADS (default 2), JOURNAL_DIR (where the journal goes; its
# file system decides the fsync cost; default $TMPDIR or /tmp).
# Three runs of DURATION plus start-up: about 35 s with the defaults.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${MOCKPG_BIN:-$ROOT/mockpg/coupon-mockpg}
LUA=$ROOT/bench/mockpg/confirm.lua
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
SECRET=bench_sk_mockpg
WORK=$(mktemp -d "${JOURNAL_DIR:-${TMPDIR:-/tmp}}/mockpg-bench.XXXXXX")
SPID=""

# Stop the server we started and remove the journal, however we exit.
cleanup() {
	if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
		kill -TERM "$SPID" 2>/dev/null || true
		wait "$SPID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

for tool in wrk curl; do
	command -v "$tool" >/dev/null || { echo "$tool is not installed (Debian package: $tool)"; exit 1; }
done
# the mock is not part of the extension's build: make it (a no-op when current)
if [ -z "${MOCKPG_BIN:-}" ]; then
	make -s -C "$ROOT" mockpg >/dev/null || { echo "make mockpg failed"; exit 1; }
fi
[ -x "$BIN" ] || { echo "$BIN not built; run: make mockpg"; exit 1; }

# start_server FLAGS...: start on a free loopback port; sets BASE and SPID.
start_server() {
	: >"$WORK/server.out"
	"$BIN" --port 0 --secret "$SECRET" "$@" >"$WORK/server.out" 2>"$WORK/server.err" &
	SPID=$!
	for _ in $(seq 1 100); do
		grep -q '^coupon-mockpg listening on ' "$WORK/server.out" && break
		sleep 0.05
	done
	BASE="http://$(sed -n 's/^coupon-mockpg listening on //p' "$WORK/server.out")"
}

# stop_server: SIGTERM and wait.
stop_server() {
	kill -TERM "$SPID"
	wait "$SPID" || true
	SPID=""
}

# cpu_busy: jiffies the whole machine has spent not idle (all CPUs).
cpu_busy() {
	awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# proc_cpu PID: jiffies a process has used (user + system).
proc_cpu() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# run NAME IDEMPOTENCY FLAGS...: one wrk run against a fresh server.  Also
# reports how much CPU other processes used meanwhile, since wrk and the
# server share this machine's CPUs with whatever else runs on it.
run() {
	local name=$1 idem=$2 busy0 busy1 srv0 srv1 wrk_s
	shift 2
	start_server "$@"
	echo "== $name (server flags: ${*:-none}; Idempotency-Key: $([ "$idem" = 1 ] && echo yes || echo no))"
	busy0=$(cpu_busy)
	srv0=$(proc_cpu "$SPID")
	TIMEFORMAT='%U %S'
	{ time MOCKPG_AUTH="Basic $(printf '%s:' "$SECRET" | base64 -w0)" MOCKPG_RUN="$name" \
		MOCKPG_IDEMPOTENCY=$idem \
		wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$LUA" "$BASE/" \
		>"$WORK/wrk.out"; } 2>"$WORK/wrk.time"
	busy1=$(cpu_busy)
	srv1=$(proc_cpu "$SPID")
	sed -n -e 's/^/   /' -e '/Latency Distribution/,$p' "$WORK/wrk.out"
	wrk_s=$(awk '{ print $1 + $2 }' "$WORK/wrk.time")
	awk -v busy=$((busy1 - busy0)) -v srv=$((srv1 - srv0)) -v wrk="$wrk_s" \
		-v hz="$(getconf CLK_TCK)" -v ncpu="$(nproc)" -v secs="$DURATION" 'BEGIN {
		other = busy / hz - srv / hz - wrk
		if (other < 0) other = 0
		printf "   CPU seconds: server %.1f, wrk %.1f, other processes %.1f (of %d available)\n",
			srv / hz, wrk, other, ncpu * secs
	}'
	curl -s "$BASE/__mock/stats" |
		sed -n 's/.*"approvals":\([0-9]*\).*"records":\([0-9]*\),"fsyncs":\([0-9]*\).*/   approvals: \1, journal records: \2, fsyncs: \3/p'
	echo    # the stats body has no trailing newline
	stop_server
	echo
}

echo "coupon-mockpg benchmark: POST /v1/payments/confirm, unique orderIds"
echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(. /etc/os-release && echo "$PRETTY_NAME")"
echo "wrk: $WRK_THREADS threads, $CONNECTIONS connections, ${DURATION}s per run; journal in $WORK"
echo

run no-journal 0
run journal 0 --journal "$WORK/a.jnl"
run journal-idempotency 1 --journal "$WORK/b.jnl"
