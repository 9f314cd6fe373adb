#!/usr/bin/env bash
# Load test: wrong codes are throttled per user, also under concurrency.
# 40 sessions of one user try a code that someone else already redeemed,
# all at once.  The check of the user's failures and the count of this
# attempt are one step (throttle.c), so exactly coupon.code_max_failures of
# them may get as far as the code (PT409 code_redeemed); every other one is
# PT429 too_many_code_attempts.  Nothing changes hands.  And a code never
# reaches the server log: the failed redeem_code() statement is logged
# without its STATEMENT line, while another failed statement keeps its own.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

DB=load_code_throttle
CLIENTS=40
# the counts live in shared memory for the whole cluster: a user of our own
ATTACKER="attacker-$$-$(date +%s%N)"

create_db "$DB"
psql_db "$DB" <<SQL
$(outcome_sql)
SELECT id AS m FROM coupon.create_merchant('load code throttle') \gset
SELECT id AS p FROM coupon.create_policy(:m, 'codes', 'fixed', 1000, issue_method => 'code',
	total_quantity => 1, per_user_limit => NULL) \gset
CREATE TABLE the_code AS SELECT coupon.generate_codes(:p, 1) AS code;
SELECT count(*) AS owner_has_it FROM the_code, coupon.redeem_code(the_code.code, 'owner');
SQL
CODE=$(query "$DB" "SELECT code FROM the_code")
MAX=$(query "$DB" "SHOW coupon.code_max_failures")

SCRIPT=$(scratch_file code_throttle.pgbench <<'PGB'
SELECT load_try('redeem', format('SELECT coupon.redeem_code(%L, %L)', ':code', ':who'));
PGB
)
diag "$CLIENTS sessions of one user try a redeemed code at once (limit $MAX)"
pgbench_run "$DB" "$SCRIPT" -c "$CLIENTS" -j 8 -t 1 -D code="$CODE" -D who="$ATTACKER"
check "exactly code_max_failures attempts reached the code, every other one was throttled" \
	"$(query "$DB" "SELECT string_agg(outcome || ' x' || n, ', ' ORDER BY outcome)
	                  FROM (SELECT outcome, count(*) AS n FROM load_outcome GROUP BY outcome) o")" \
	"PT409 code_redeemed x$MAX, PT429 too_many_code_attempts x$((CLIENTS - MAX))"
check "the coupon still belongs to its owner" \
	"$(query "$DB" "SELECT string_agg(user_id, ',') FROM coupon.coupon")" "owner"

# the server log (scripts/test.sh says where it is)
: "${COUPON_SERVER_LOG:?COUPON_SERVER_LOG must name the server log of the cluster}"
MARKER="not-a-policy-$$-$(date +%s%N)"
query "$DB" "SELECT coupon.redeem_code('$CODE', 'snoop')" >/dev/null 2>&1 || true
query "$DB" "SELECT coupon.issue(-1, '$MARKER')" >/dev/null 2>&1 || true
# the second error is logged after the first: once it is there, both are
wait_for_log() {
	for _ in $(seq 1 100); do
		grep -qF -- "$MARKER" "$COUPON_SERVER_LOG" && return 0
		sleep 0.1
	done
	return 1
}
check "another failed statement is logged with its STATEMENT line" \
	"$(wait_for_log && grep -cF "STATEMENT:  SELECT coupon.issue(-1, '$MARKER')" "$COUPON_SERVER_LOG")" 1
check "the code of a failed redeem_code() is nowhere in the server log" \
	"$(grep -cF -- "$CODE" "$COUPON_SERVER_LOG" || true)" 0

load_finish
