# bench/lib.bash: what bench/run.sh and bench/ab.sh share: one measured
# pgbench run, the settling before it and the information lines.  Sourced
# after scripts/lib.sh, with WORK, RESULTS, INFO, SECS, JOBS and ROUNDS set
# and the cluster at PGHOST/PGPORT running.

# BENCH_SAVE names a directory from where the runner was started, not from
# the work directory it moves into
[ -z "${BENCH_SAVE:-}" ] || BENCH_SAVE=$(realpath -m "$BENCH_SAVE")

# BENCH_RELAY=1: the relay worker serves the bench database, as it serves
# an application's (coupon.database): the workloads' events take the queue
# and the relay moves and publishes them (NOTIFY) on the same two CPUs.
# By default it serves another database, and the events wait in the
# outbox: the figures are the checkouts' alone, as in every run before 0.13
bench_relay_conf() {
	[ "${BENCH_RELAY:-0}" = 1 ] && echo "coupon.database = 'bench'"
	true
}

# one value from a query
q() {
	local db=$1
	shift
	pg -d "$db" -At -c "$*"
}

# a line for the report's information section (with its round, if several)
ROUND=1
info() {
	if [ "$ROUNDS" -gt 1 ] && [ -n "$ROUND" ]; then
		printf 'round %s: %s\n' "$ROUND" "$*" >>"$INFO"
	else
		printf '%s\n' "$*" >>"$INFO"
	fi
}

# a checkpoint, so that no run pays for the previous one's dirty pages
# before a run: let autovacuum finish what the previous runs left it (up to
# 120 s), so it does not share the two CPUs with the measurement, then
# write the dirty buffers out
settle() {
	local i
	for i in $(seq 1 240); do
		[ "$(q "$1" "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")" = 0 ] && break
		sleep 0.5
	done
	q "$1" "CHECKPOINT" >/dev/null
}

# next multixact id as of the last checkpoint (settle first)
next_mxid() {
	q "$1" "SELECT next_multixact_id FROM pg_control_checkpoint()"
}

# "updates hot_updates" of a table so far (pg_stat_user_tables)
upd_stats() {
	q bench "SELECT n_tup_upd || ' ' || n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = '$1'::regclass"
}

# an information line: how many of a table's updates since BEFORE were HOT
hot_info() {
	local what=$1 table=$2 before=$3 after
	after=$(upd_stats "$table")
	set -- $before $after
	info "$what: $table updated $(($3 - $1)) times, $(($4 - $2)) of them HOT (heap-only, no index writes)"
}

LAST_XACTS=0
LAST_STATUS=ok

# run_pgbench KEY LABEL CLIENTS DB [pgbench options...]: one measured run
run_pgbench() {
	local key=$1 label=$2 c=$3 db=$4
	shift 4
	local prefix="$WORK/logs/$key-c$c-r$ROUND"
	local out="$prefix.out"
	local lsn0 wal tps xacts status=ok rc=0 mx0 mx1

	settle "$db"
	mx0=$(next_mxid "$db")
	lsn0=$(q "$db" "SELECT pg_current_wal_lsn()")
	log "run: $label, $c clients, ${SECS}s (round $ROUND of $ROUNDS)"
	PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER=postgres \
		"$PGBIN/pgbench" -M prepared -c "$c" -j "$JOBS" -T "$SECS" \
		-l --log-prefix="$prefix" "$@" "$db" >"$out" 2>&1 || rc=$?
	wal=$(q "$db" "SELECT pg_current_wal_lsn() - '$lsn0'::pg_lsn")
	settle "$db"
	mx1=$(next_mxid "$db")
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$out" | head -1)
	xacts=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out" | head -1)
	if [ "$rc" != 0 ] || grep -q "aborted" "$out"; then
		status="pgbench exit $rc, see below"
		info "pgbench $label at $c clients did not finish cleanly:"
		while IFS= read -r l; do info "    $l"; done < <(grep -v '^\(pgbench\|transaction type\|scaling\|query mode\|number of\|latency\|initial\|tps\|duration\|statement\)' "$out" | head -5)
	fi
	[ -n "$tps" ] || tps=-
	[ -n "$xacts" ] || xacts=0
	if [ "$mx1" != "$mx0" ]; then
		info "$label at $c clients: $((mx1 - mx0)) multixacts created ($(awk -v m=$((mx1 - mx0)) -v x="$xacts" 'BEGIN { printf "%.2f", (x > 0 ? m / x : 0) }') per transaction)"
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$key" "$label" "$c" "$tps" "$prefix" \
		"$status" "${wal:-}" "$xacts" "-" "$ROUND" >>"$RESULTS"
	LAST_XACTS=$xacts
	LAST_STATUS=$status
}


# the report: a header naming the machine and settings, the table
# (bench/report.py) and the information lines; $1 names the benchmark,
# $2 the client counts
print_report() {
	echo
	echo "$1: pgbench -M prepared -j $JOBS, ${SECS}s per run, clients: $2"
	echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, load average now $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "server: $(q postgres "SELECT version()")"
	echo "run took $((SECONDS - START))s (setup, runs and checks; build excluded)"
	echo "settings: fsync $(q postgres "SHOW fsync"), synchronous_commit $(q postgres "SHOW synchronous_commit"), shared_buffers $(q postgres "SHOW shared_buffers"), max_connections $(q postgres "SHOW max_connections"), checkpoint before each run"
	echo
	python3 "$COUPON_ROOT/bench/report.py" "$RESULTS" "$WORK/summary.tsv"
	echo
	sed 's/^/info: /' "$INFO"
}

# BENCH_SAVE=DIR: keep the run's report (what was printed), its summary
# table and the results file in DIR, for bench/plot.sh and docs/benchmarks.md
save_report() {
	local report=$1
	[ -n "${BENCH_SAVE:-}" ] || return 0
	mkdir -p "$BENCH_SAVE"
	cp "$report" "$BENCH_SAVE/report.txt"
	cp "$WORK/summary.tsv" "$BENCH_SAVE/summary.tsv"
	echo "report saved in $BENCH_SAVE"
}
