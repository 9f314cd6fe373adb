# test/load/lib.bash: shared by the load tests in this directory (sourced,
# not run: scripts/test.sh runs only *.sh).
#
# The caller runs as root with PGHOST/PGPORT pointing at a running private
# cluster and WORK at a scratch directory the postgres user owns.  Every
# client program runs as the postgres user.  Results are TAP lines
# (test/lib.bash); the script exits non-zero when any check failed.

: "${PGHOST:?PGHOST must point at the socket directory of the cluster}"
: "${PGPORT:?PGPORT must be set}"
: "${WORK:?WORK must be a scratch directory owned by postgres}"

source "$(dirname "${BASH_SOURCE[0]}")/../lib.bash"

LOAD_DBS=()
LOAD_DIR=$(mktemp -d "$WORK/load-$TAP_NAME.XXXXXX")
chmod 755 "$LOAD_DIR"
chown postgres:postgres "$LOAD_DIR"
LOAD_START=$(date +%s)

# psql on database $1, quiet, stop on error; extra arguments follow
psql_db() {
	local db=$1
	shift
	as_pg psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@"
}

# one value from a query on database $1
query() {
	as_pg psql -X -q -v ON_ERROR_STOP=1 -At -d "$1" -c "$2"
}

# a fresh database with the extension; dropped when the script ends
create_db() {
	local db=$1
	psql_db postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
	LOAD_DBS+=("$db")
	psql_db "$db" -c "CREATE EXTENSION coupon"
}

# pgbench as postgres: pgbench_run DB SCRIPT_FILE [pgbench options...]
pgbench_run() {
	local db=$1 script=$2
	shift 2
	local log="$LOAD_DIR/pgbench-$(basename "$script").log"
	if as_pg pgbench -n -f "$script" "$@" "$db" >"$log" 2>&1; then
		ok "pgbench $(basename "$script") ran without aborted clients"
		grep -E '^(number of (transactions actually processed|failed)|tps)' "$log" | sed 's/^/#   /' || true
	else
		not_ok "pgbench $(basename "$script") ran without aborted clients"
		sed 's/^/#   /' "$log" | tail -40
	fi
}

# a file for pgbench or psql in the scratch directory, readable by postgres
scratch_file() {
	local f="$LOAD_DIR/$1"
	cat >"$f"
	chown postgres:postgres "$f"
	echo "$f"
}

# Raise policy $2's discount_value by one, each time in its own transaction,
# in the background until stop_policy_writer: a writer that runs from
# before the clients start until after they end overlaps every call.
start_policy_writer() {
	local db=$1 pid=$2
	rm -f "$LOAD_DIR/writer.stop"
	(
		n=0
		while [ ! -e "$LOAD_DIR/writer.stop" ]; do
			query "$db" "UPDATE coupon.policy SET discount_value = discount_value + 1 WHERE id = $pid" >/dev/null
			n=$((n + 1))
		done
		echo "$n" >"$LOAD_DIR/writer.count"
	) &
	WRITER_PID=$!
}

# stop the writer started on database $1, policy $2, and check that it
# overlapped the clients: the values their statements read (seen's
# snapshot_value) differ, and the policy holds every change the writer
# made (from a value of 1000)
stop_policy_writer() {
	local db=$1 pid=$2 writes
	touch "$LOAD_DIR/writer.stop"
	wait "$WRITER_PID"
	writes=$(cat "$LOAD_DIR/writer.count")
	check "the policy changed while the clients ran" \
		"$(query "$db" "SELECT count(DISTINCT snapshot_value) > 1 FROM seen")" "t"
	check "the writer made all its changes" \
		"$(query "$db" "SELECT discount_value FROM coupon.policy WHERE id = $pid")" "$((1000 + writes))"
}

load_cleanup() {
	local rc=$?
	for db in "${LOAD_DBS[@]}"; do
		psql_db postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
	done
	rm -rf "$LOAD_DIR"
	exit $rc
}
trap load_cleanup EXIT

# the summary line and the exit status
load_finish() {
	echo "1..$TAP_TESTS"
	diag "$TAP_NAME: $((TAP_TESTS - TAP_FAILED))/$TAP_TESTS passed in $(($(date +%s) - LOAD_START)) s"
	[ "$TAP_FAILED" -eq 0 ]
}

# SQL for a helper that records the outcome of one call: the table
# load_outcome(op, outcome) gets 'ok' or '<SQLSTATE> <reason>' per attempt.
# Every error is caught, so no pgbench client ever aborts; the checks then
# say which outcomes are allowed.
outcome_sql() {
	cat <<'SQL'
CREATE TABLE load_outcome (op text NOT NULL, outcome text NOT NULL);
-- full text of errors that are not business errors (deadlocks, internal faults)
CREATE TABLE load_fault (op text, sqlstate text, message text, detail text, context text);
CREATE FUNCTION load_err(st text, det text, msg text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $f$
BEGIN
	RETURN st || ' ' || coalesce(det::jsonb ->> 'reason', msg);
EXCEPTION WHEN OTHERS THEN
	RETURN st || ' ' || msg;
END
$f$;
-- run one statement and record its outcome as op
CREATE FUNCTION load_try(op text, stmt text) RETURNS void
LANGUAGE plpgsql AS $f$
DECLARE
	st text; det text; msg text;
BEGIN
	EXECUTE stmt;
	INSERT INTO load_outcome VALUES (op, 'ok');
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, det = PG_EXCEPTION_DETAIL, msg = MESSAGE_TEXT;
	INSERT INTO load_outcome VALUES (op, load_err(st, det, msg));
END
$f$;
SQL
}
