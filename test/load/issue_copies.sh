#!/usr/bin/env bash
# Load test: issue() takes the policy it issues from out of the backend's
# copies (src/factcache.c, since 0.11), which must never be older than the
# caller's snapshot.  32 clients issue coupons of one balance policy while
# a writer raises the policy's value by one, each time in its own
# transaction, from before the first issue until after the last.  Every
# client statement reads the policy's value and issues a coupon together:
# the new coupon's balance (the policy's value as issue() saw it) may be
# newer than the statement's snapshot (it can only grow), never older.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

DB=load_issue_copies
CLIENTS=32
ROUNDS=300

create_db "$DB" >/dev/null
psql_db "$DB" <<'SQL'
SELECT id AS m FROM coupon.create_merchant('load issue copies') \gset
SELECT id AS p FROM coupon.create_policy(:m, 'growing gift', 'balance', 1000, per_user_limit => NULL) \gset
CREATE TABLE seen (snapshot_value bigint NOT NULL, issued_with bigint NOT NULL);
SQL
PID=$(query "$DB" "SELECT min(id) FROM coupon.policy")

READER=$(scratch_file issue_copies_reader.pgbench <<'PGB'
INSERT INTO seen
SELECT p.discount_value, (coupon.issue(:pid, 'u' || :client_id)).balance
  FROM coupon.policy p
 WHERE p.id = :pid;
PGB
)

start_policy_writer "$DB" "$PID"
pgbench_run "$DB" "$READER" -M prepared -c "$CLIENTS" -j 2 -t "$ROUNDS" -D pid="$PID"
stop_policy_writer "$DB" "$PID"

check "every statement issued a coupon" \
	"$(query "$DB" "SELECT count(*) FROM seen") / $(query "$DB" "SELECT count(*) FROM coupon.coupon WHERE policy_id = $PID")" \
	"$((CLIENTS * ROUNDS)) / $((CLIENTS * ROUNDS))"
check "no coupon was issued from a policy older than its statement's snapshot" \
	"$(query "$DB" "SELECT count(*) FROM seen WHERE issued_with < snapshot_value")" "0"
diag "coupons issued from a policy newer than their snapshot: $(query "$DB" "SELECT count(*) FROM seen WHERE issued_with > snapshot_value")"

load_finish
