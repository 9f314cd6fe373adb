#!/usr/bin/env bash
# scripts/test.sh: every test suite, on a fresh Debian 12 machine, as root.
#
# Installs the Debian packages it needs, builds and installs the extension,
# runs the unit tests, the mock gateway suite, then starts a private cluster
# (postgres user, own directory and socket) and runs pg_regress, the
# isolation specs, the pgTAP suites and the concurrent load tests against
# it, then the payment saga tests (each with its own cluster and mock
# gateway).  Stops everything it started.  Exits non-zero if anything failed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# the test command is what CI runs: a compiler warning fails the build
COUPON_WERROR=1
TEST_START=$(date +%s)
prepare_run test
PORT=${COUPON_TEST_PORT:-$(free_port)}
passed=0
failed=0
failures=()
timings=()

cleanup() {
	cluster_stop "$WORK"
	[ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

# run one suite: name, then the command; record the outcome
suite() {
	local name=$1 start=$(date +%s) outcome=passed
	shift
	log "suite: $name"
	if "$@"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		failures+=("$name")
		outcome=FAILED
	fi
	timings+=("$(printf '%-20s %-7s %5d s' "$name" "$outcome" $(($(date +%s) - start)))")
}

# pg_regress and isolation, as the postgres user, in a copy it owns
run_installcheck() {
	local tree="$WORK/tree"
	mkdir -p "$tree"
	cp -a "$COUPON_ROOT/Makefile" "$COUPON_ROOT/coupon.control" \
		"$COUPON_ROOT/sql" "$COUPON_ROOT/expected" "$COUPON_ROOT/test" "$COUPON_ROOT/src" "$tree/"
	chown -R postgres:postgres "$tree"
	if ! runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" \
		make -s -C "$tree" installcheck; then
		find "$tree" -name regression.diffs -exec cat {} + | head -300
		return 1
	fi
}

# pgTAP suites, each in a database of its own
run_pgtap() {
	local files=("$COUPON_ROOT"/test/pgtap/*.sql)
	[ -e "${files[0]}" ] || return 0
	pg -d postgres -c "DROP DATABASE IF EXISTS coupon_tap" -c "CREATE DATABASE coupon_tap"
	pg -d coupon_tap -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION coupon"
	cp -a "$COUPON_ROOT/test/pgtap" "$WORK/pgtap"
	chown -R postgres:postgres "$WORK/pgtap"
	runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" \
		pg_prove -d coupon_tap --ext .sql "$WORK/pgtap"
}

# concurrent-client load tests: each script exits non-zero on failure
run_load() {
	local rc=0
	for t in "$COUPON_ROOT"/test/load/*.sh; do
		[ -e "$t" ] || continue
		log "load: $(basename "$t")"
		WORK="$WORK" bash "$t" || rc=1
	done
	return $rc
}

# payment saga tests: each starts its own cluster and mock gateway in $WORK
run_saga() {
	local rc=0
	for t in "$COUPON_ROOT"/test/saga/*.sh; do
		[ -e "$t" ] || continue
		log "saga: $(basename "$t")"
		WORK="$WORK" bash "$t" || rc=1
	done
	return $rc
}

suite unit make -s -C "$COUPON_ROOT" unit
if [ -x "$COUPON_ROOT/test/mockpg/run.sh" ]; then
	suite mockpg "$COUPON_ROOT/test/mockpg/run.sh"
fi

# (prepared transactions: the regress and isolation tests prepare some)
cluster_start "$WORK" "$PORT" <<'CONF'
fsync = off
synchronous_commit = off
full_page_writes = off
max_prepared_transactions = 10
CONF
export PGHOST PGPORT

# the load tests read the server log (a code must never reach it)
export COUPON_SERVER_LOG="$WORK/server.log"
suite regress+isolation run_installcheck
suite pgtap run_pgtap
suite load run_load
suite saga run_saga

echo
printf '%s\n' "${timings[@]}"
echo "whole run (install and build included): $(($(date +%s) - TEST_START)) s"
if [ $failed -gt 0 ]; then
	echo "failed suites: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
