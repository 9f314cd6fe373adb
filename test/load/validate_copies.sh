#!/usr/bin/env bash
# Load test: validate() answers from per-backend copies of policies and
# merchants (src/factcache.c), which must never be older than the caller's
# snapshot.  32 clients validate one coupon while a writer raises its
# policy's fixed discount by one, each time in its own transaction, from
# before the first validate until after the last.
# Every client statement reads the policy's discount_value and validate()'s
# discount together: the answer may be newer than the statement's snapshot
# (it can only grow), never older.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

DB=load_validate_copies
CLIENTS=32
ROUNDS=300

create_db "$DB" >/dev/null
psql_db "$DB" <<'SQL'
SELECT id AS m FROM coupon.create_merchant('load copies') \gset
SELECT id AS p FROM coupon.create_policy(:m, 'growing', 'fixed', 1000) \gset
SELECT coupon.issue(:p, 'vera') IS NOT NULL AS issued;
CREATE TABLE seen (snapshot_value bigint NOT NULL, answered bigint NOT NULL, reason text NOT NULL);
SQL
PID=$(query "$DB" "SELECT min(id) FROM coupon.policy")
MID=$(query "$DB" "SELECT min(id) FROM coupon.merchant")
CID=$(query "$DB" "SELECT min(id) FROM coupon.coupon")

READER=$(scratch_file copies_reader.pgbench <<'PGB'
INSERT INTO seen
SELECT p.discount_value, v.discount, v.reason
  FROM coupon.policy p, coupon.validate(:cid, 'vera', :mid, 50000) v
 WHERE p.id = :pid;
PGB
)

start_policy_writer "$DB" "$PID"
pgbench_run "$DB" "$READER" -M prepared -c "$CLIENTS" -j 2 -t "$ROUNDS" \
	-D cid="$CID" -D mid="$MID" -D pid="$PID"
stop_policy_writer "$DB" "$PID"

check "every answer was ok" \
	"$(query "$DB" "SELECT count(*) FILTER (WHERE reason <> 'ok') || ' of ' || count(*) FROM seen")" \
	"0 of $((CLIENTS * ROUNDS))"
check "no answer was older than its statement's snapshot" \
	"$(query "$DB" "SELECT count(*) FROM seen WHERE answered < snapshot_value")" "0"
diag "answers newer than their snapshot: $(query "$DB" "SELECT count(*) FROM seen WHERE answered > snapshot_value")"

load_finish
