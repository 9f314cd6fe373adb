#!/usr/bin/env bash
# Load test: first come, first served issuance under contention.
#
# A fcfs policy of N units (per_user_limit 2) is hit by about 10N issue()
# attempts from 64 concurrent pgbench clients drawing user ids from a pool of
# USERS users (fewer than N/2 would leave stock unsold).  Checks: exactly N
# coupons issued, the stock shards sum to zero, every attempt that failed
# failed with PT409 sold_out or per_user_limit, nobody holds more than the
# limit, user_seq has no duplicates and no gaps.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

DB=load_fcfs
N=${FCFS_N:-500}
LIMIT=2
USERS=$((N * 4 / 5))			# 400 users x 2 = 800 >= N: the stock sells out
CLIENTS=64
PER_CLIENT=$(((10 * N + CLIENTS - 1) / CLIENTS))
ATTEMPTS=$((CLIENTS * PER_CLIENT))

create_db "$DB"
psql_db "$DB" <<SQL
$(outcome_sql)
CREATE FUNCTION try_issue(policy_id bigint, user_id text) RETURNS void
LANGUAGE plpgsql AS \$f\$
DECLARE
	st text; det text; msg text;
BEGIN
	PERFORM coupon.issue(policy_id, user_id);
	INSERT INTO load_outcome VALUES ('issue', 'ok');
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, det = PG_EXCEPTION_DETAIL, msg = MESSAGE_TEXT;
	INSERT INTO load_outcome VALUES ('issue', load_err(st, det, msg));
END
\$f\$;
SELECT id AS merchant_id FROM coupon.create_merchant('load fcfs') \gset
SELECT id AS policy_id FROM coupon.create_policy(:merchant_id, 'fcfs load', 'fixed', 1000,
	issue_method => 'fcfs', total_quantity => $N, per_user_limit => $LIMIT) \gset
SQL
PID=$(query "$DB" "SELECT max(id) FROM coupon.policy")
diag "policy $PID: $N units, per_user_limit $LIMIT, $USERS users, $ATTEMPTS attempts from $CLIENTS clients"

SCRIPT=$(scratch_file fcfs.pgbench <<'PGB'
\set u random(1, :users)
SELECT try_issue(:pid, 'user-' || :u);
PGB
)
pgbench_run "$DB" "$SCRIPT" -c "$CLIENTS" -j 4 -t "$PER_CLIENT" -D pid="$PID" -D users="$USERS"

check "every attempt recorded an outcome" \
	"$(query "$DB" "SELECT count(*) FROM load_outcome")" "$ATTEMPTS"
check "exactly N issue() calls succeeded" \
	"$(query "$DB" "SELECT count(*) FROM load_outcome WHERE outcome = 'ok'")" "$N"
check "failures are only PT409 sold_out / per_user_limit" \
	"$(query "$DB" "SELECT coalesce(string_agg(DISTINCT outcome, ', '), 'none')
	                  FROM load_outcome
	                 WHERE outcome NOT IN ('ok', 'PT409 sold_out', 'PT409 per_user_limit')")" "none"
diag "outcomes: $(query "$DB" "SELECT string_agg(outcome || '=' || n, ', ' ORDER BY outcome)
                                FROM (SELECT outcome, count(*) n FROM load_outcome GROUP BY 1) s")"
check "exactly N coupons exist" \
	"$(query "$DB" "SELECT count(*) FROM coupon.coupon WHERE policy_id = $PID")" "$N"
check "stock shards sum to zero" \
	"$(query "$DB" "SELECT sum(remaining) FROM coupon.policy_stock WHERE policy_id = $PID")" "0"
check "no stock shard below zero" \
	"$(query "$DB" "SELECT count(*) FROM coupon.policy_stock WHERE policy_id = $PID AND remaining < 0")" "0"
check "policy_stats: issued N, stock_remaining 0" \
	"$(query "$DB" "SELECT issued || '/' || stock_remaining FROM coupon.policy_stats WHERE policy_id = $PID")" "$N/0"
check "nobody above per_user_limit" \
	"$(query "$DB" "SELECT count(*) FROM (SELECT user_id FROM coupon.coupon WHERE policy_id = $PID
	                 GROUP BY user_id HAVING count(*) > $LIMIT) s")" "0"
check "no duplicate (user_id, user_seq)" \
	"$(query "$DB" "SELECT count(*) FROM (SELECT user_id, user_seq FROM coupon.coupon WHERE policy_id = $PID
	                 GROUP BY 1, 2 HAVING count(*) > 1) s")" "0"
check "user_seq runs 1..k for each user" \
	"$(query "$DB" "SELECT count(*) FROM (SELECT user_id FROM coupon.coupon WHERE policy_id = $PID
	                 GROUP BY user_id
	                 HAVING min(user_seq) <> 1 OR max(user_seq) <> count(*) OR count(user_seq) <> count(*)) s")" "0"
check "users holding coupons only come from the pool" \
	"$(query "$DB" "SELECT count(*) FROM coupon.coupon WHERE policy_id = $PID
	                 AND NOT user_id ~ '^user-[0-9]+\$'")" "0"

# Phase 2: the per-user limit binds.  A second policy of N units, limit 2,
# hit by the same number of attempts from only HOT_USERS users: every user
# ends with exactly 2 coupons (user_seq 1 and 2) and the stock has exactly
# N - 2 * HOT_USERS left.
HOT_USERS=20
PID2=$(query "$DB" "SELECT id FROM coupon.create_policy((SELECT max(id) FROM coupon.merchant),
	'fcfs hot users', 'percent', 1000, issue_method => 'fcfs', total_quantity => $N,
	per_user_limit => $LIMIT)")
psql_db "$DB" -c "TRUNCATE load_outcome"
diag "policy $PID2: $N units, per_user_limit $LIMIT, $HOT_USERS users, $ATTEMPTS attempts"
pgbench_run "$DB" "$SCRIPT" -c "$CLIENTS" -j 4 -t "$PER_CLIENT" -D pid="$PID2" -D users="$HOT_USERS"
check "hot users: exactly 2 x users succeeded" \
	"$(query "$DB" "SELECT count(*) FROM load_outcome WHERE outcome = 'ok'")" "$((HOT_USERS * LIMIT))"
check "hot users: failures are only PT409 per_user_limit" \
	"$(query "$DB" "SELECT coalesce(string_agg(DISTINCT outcome, ', '), 'none')
	                  FROM load_outcome WHERE outcome NOT IN ('ok', 'PT409 per_user_limit')")" "none"
check "hot users: every user holds seq 1 and 2" \
	"$(query "$DB" "SELECT count(*) || ' ' || count(*) FILTER (WHERE s = '1,2')
	                  FROM (SELECT user_id, string_agg(user_seq::text, ',' ORDER BY user_seq) s
	                          FROM coupon.coupon WHERE policy_id = $PID2 GROUP BY user_id) x")" \
	"$HOT_USERS $HOT_USERS"
check "hot users: stock + issued = total_quantity" \
	"$(query "$DB" "SELECT stock_remaining || '+' || issued FROM coupon.policy_stats WHERE policy_id = $PID2")" \
	"$((N - HOT_USERS * LIMIT))+$((HOT_USERS * LIMIT))"

load_finish
