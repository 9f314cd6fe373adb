#!/usr/bin/env bash
# Load test: 200 clients reserve the same coupon at once, each for its own
# order.  Exactly one hold may win: the coupon ends 'reserved' with exactly
# one held reservation, and every other call failed with PT409
# coupon_reserved.  A second wave against a budgeted coupon checks the same
# with the policy lock in the path, and that budget_used counts one hold.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

DB=load_reserve_hot
CLIENTS=200

create_db "$DB"
psql_db "$DB" <<SQL
$(outcome_sql)
CREATE FUNCTION try_reserve(coupon_id bigint, order_id text) RETURNS void
LANGUAGE plpgsql AS \$f\$
DECLARE
	st text; det text; msg text; ctx text;
	c record;
BEGIN
	SELECT cp.user_id, p.merchant_id INTO c
	  FROM coupon.coupon cp JOIN coupon.policy p ON p.id = cp.policy_id
	 WHERE cp.id = coupon_id;
	PERFORM coupon.reserve(coupon_id, c.user_id, c.merchant_id, order_id, 50000);
	INSERT INTO load_outcome VALUES ('reserve', 'ok');
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, det = PG_EXCEPTION_DETAIL, msg = MESSAGE_TEXT,
		ctx = PG_EXCEPTION_CONTEXT;
	INSERT INTO load_outcome VALUES ('reserve', load_err(st, det, msg));
	IF st <> 'PT409' THEN
		INSERT INTO load_fault VALUES ('reserve', st, msg, det, ctx);
	END IF;
END
\$f\$;
SELECT id AS merchant_id FROM coupon.create_merchant('load reserve hot') \gset
SELECT id AS plain_policy FROM coupon.create_policy(:merchant_id, 'plain', 'fixed', 3000) \gset
SELECT id AS budget_policy FROM coupon.create_policy(:merchant_id, 'budgeted', 'percent', 1000,
	max_discount => 4000, budget => 1000000) \gset
SELECT count(*) AS issued FROM coupon.issue(:plain_policy, 'hot-user') \gset
SELECT count(*) AS issued FROM coupon.issue(:budget_policy, 'hot-user') \gset
SQL

SCRIPT=$(scratch_file reserve_hot.pgbench <<'PGB'
SELECT try_reserve(:cid, 'order-' || :wave || '-' || :client_id);
PGB
)

for kind in plain budgeted; do
	if [ $kind = plain ]; then
		CID=$(query "$DB" "SELECT min(id) FROM coupon.coupon")
	else
		CID=$(query "$DB" "SELECT max(id) FROM coupon.coupon")
	fi
	psql_db "$DB" -c "TRUNCATE load_outcome, load_fault"
	diag "$kind coupon $CID: $CLIENTS clients, one reserve() each"
	# each wave its own orders: an order that already holds the first wave's
	# coupon would (rightly) refuse a second non-stackable one
	wave=$((${wave:-0} + 1))
	pgbench_run "$DB" "$SCRIPT" -c "$CLIENTS" -j 8 -t 1 -D cid="$CID" -D wave="$wave"
	check "$kind: one reserve() won" \
		"$(query "$DB" "SELECT count(*) FROM load_outcome WHERE outcome = 'ok'")" "1"
	# the outcomes themselves, counted, so a failure shows what the odd calls answered
	check "$kind: every other call answered PT409 coupon_reserved" \
		"$(query "$DB" "SELECT string_agg(outcome || ' x' || n, ', ' ORDER BY outcome)
		                  FROM (SELECT outcome, count(*) AS n FROM load_outcome
		                         WHERE outcome <> 'ok' GROUP BY outcome) o")" \
		"PT409 coupon_reserved x$((CLIENTS - 1))"
	query "$DB" "SELECT sqlstate || ': ' || message || ' | ' || coalesce(detail, '') || ' | ' || coalesce(context, '')
	               FROM load_fault LIMIT 3" | sed 's/^/#   fault: /'
	check "$kind: exactly one reservation row, held" \
		"$(query "$DB" "SELECT count(*) || ' ' || count(*) FILTER (WHERE status = 'held')
		                  FROM coupon.reservation WHERE coupon_id = $CID")" "1 1"
	check "$kind: the coupon is reserved" \
		"$(query "$DB" "SELECT status FROM coupon.coupon WHERE id = $CID")" "reserved"
	check "$kind: validate() reports coupon_reserved" \
		"$(query "$DB" "SELECT v.reason FROM coupon.coupon c JOIN coupon.policy p ON p.id = c.policy_id,
		                  coupon.validate(c.id, c.user_id, p.merchant_id, 50000) v WHERE c.id = $CID")" \
		"coupon_reserved"
done
check "budgeted: budget_used is the one hold's discount" \
	"$(query "$DB" "SELECT p.budget_used = r.discount AND r.discount = 4000
	                  FROM coupon.policy p JOIN coupon.coupon c ON c.policy_id = p.id
	                  JOIN coupon.reservation r ON r.coupon_id = c.id
	                 WHERE p.budget IS NOT NULL")" "t"

load_finish
