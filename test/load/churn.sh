#!/usr/bin/env bash
# Load test: reserve / release / confirm / expire churn over a few coupons.
#
# 16 coupons of three policies (fixed with a tight budget, balance with a
# budget, percent without one) are reserved, released, confirmed, lapsed and
# swept, and validated by 32 concurrent clients.  Every error is caught and
# recorded; only the business answers each operation may give are allowed
# (a deadlock or any internal error fails the test).  Then the invariants:
# budget_used = sum of discounts of held + confirmed reservations for every
# budgeted policy, never above the budget; no coupon with two held
# reservations; a coupon is reserved exactly when it has a held reservation;
# balances add up; a fixed coupon is used exactly once.
#
# Phase "one sweeper": only client 0 runs expire_reservations(); the others
# only let holds lapse.  Phase "all sweep": every client sweeps, so several
# expire_reservations() calls overlap: they must not deadlock each other
# (docs/concepts.md, "Lock order": one lock order everywhere).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

DB=load_churn
CLIENTS=32
PER_CLIENT=${CHURN_TX:-250}
BALANCE=1000000

create_db "$DB"
psql_db "$DB" >/dev/null <<SQL
$(outcome_sql)
CREATE TABLE pool (n int PRIMARY KEY, coupon_id bigint NOT NULL);

-- the held reservation of pool coupon n, if any
CREATE FUNCTION held_of(n int) RETURNS bigint LANGUAGE sql STABLE AS \$f\$
	SELECT r.id FROM coupon.reservation r JOIN pool ON pool.coupon_id = r.coupon_id
	 WHERE pool.n = \$1 AND r.status = 'held'
\$f\$;

-- let the held reservation of coupon n lapse, as time passing would (its
-- own transaction; a hold lapses once, its expires_at never moves again)
CREATE FUNCTION lapse(n int) RETURNS void LANGUAGE sql AS \$f\$
	UPDATE coupon.reservation SET expires_at = now() - interval '1 second'
	 WHERE id = held_of(\$1) AND expires_at > now()
\$f\$;

-- one operation on pool coupon n; records its outcome
CREATE FUNCTION churn(op int, n int, client int, amount bigint, sweepers int) RETURNS void
LANGUAGE plpgsql AS \$f\$
DECLARE
	st text; det text; msg text; ctx text;
	kind text;
	rid bigint;
	c record;
BEGIN
	SELECT cp.id, cp.user_id, cp.status, cp.policy_id, p.merchant_id INTO c
	  FROM pool JOIN coupon.coupon cp ON cp.id = pool.coupon_id
	  JOIN coupon.policy p ON p.id = cp.policy_id
	 WHERE pool.n = churn.n;
	IF op <= 45 AND c.status = 'used' THEN
		-- a spent coupon is replaced by a new one for the same user (the
		-- pool row is locked first, so only one client replaces it)
		kind := 'reissue';
		PERFORM 1 FROM pool WHERE pool.n = churn.n AND pool.coupon_id = c.id FOR UPDATE;
		IF FOUND THEN
			UPDATE pool SET coupon_id = (coupon.issue(c.policy_id, c.user_id)).id
			 WHERE pool.n = churn.n;
		END IF;
	ELSIF op <= 45 THEN
		kind := 'reserve';
		PERFORM coupon.reserve(c.id, c.user_id, c.merchant_id,
							   format('o-%s-%s', client, clock_timestamp()), amount);
	ELSIF op <= 70 THEN
		kind := 'release';
		rid := held_of(n);
		IF rid IS NULL THEN
			INSERT INTO load_outcome VALUES (kind, 'none');
			RETURN;
		END IF;
		PERFORM coupon.release(rid);
	ELSIF op <= 78 THEN
		kind := 'confirm';
		rid := held_of(n);
		IF rid IS NULL THEN
			INSERT INTO load_outcome VALUES (kind, 'none');
			RETURN;
		END IF;
		PERFORM coupon.confirm(rid);
	ELSIF op <= 90 AND client >= sweepers THEN
		kind := 'lapse';		-- lapse() ran; a sweeper will release it
	ELSIF op <= 90 THEN
		kind := 'expire';
		PERFORM coupon.expire_reservations();
	ELSE
		kind := 'validate';
		PERFORM coupon.validate(c.id, c.user_id, c.merchant_id, amount);
	END IF;
	INSERT INTO load_outcome VALUES (kind, 'ok');
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, det = PG_EXCEPTION_DETAIL, msg = MESSAGE_TEXT,
		ctx = PG_EXCEPTION_CONTEXT;
	INSERT INTO load_outcome VALUES (coalesce(kind, '?'), load_err(st, det, msg));
	IF st NOT LIKE 'PT%' THEN
		INSERT INTO load_fault VALUES (kind, st, msg, det, ctx);
	END IF;
END
\$f\$;

SELECT id AS m FROM coupon.create_merchant('load churn') \gset
SELECT id AS fixed_p FROM coupon.create_policy(:m, 'fixed, tight budget', 'fixed', 1000,
	per_user_limit => NULL, budget => 20000) \gset
SELECT id AS balance_p FROM coupon.create_policy(:m, 'balance, budget', 'balance', $BALANCE,
	budget => 3000000) \gset
SELECT id AS percent_p FROM coupon.create_policy(:m, 'percent, no budget', 'percent', 1500,
	max_discount => 2500, per_user_limit => NULL) \gset
INSERT INTO pool
SELECT g, (coupon.issue(:fixed_p, 'fixed-user-' || g)).id FROM generate_series(1, 8) g;
INSERT INTO pool
SELECT 8 + g, (coupon.issue(:balance_p, 'balance-user-' || g)).id FROM generate_series(1, 4) g;
INSERT INTO pool
SELECT 12 + g, (coupon.issue(:percent_p, 'percent-user')).id FROM generate_series(1, 4) g;
SQL

SCRIPT=$(scratch_file churn.pgbench <<'PGB'
\set n random(1, 16)
\set op random(1, 100)
\set amount random(1000, 20000)
SELECT lapse(:n) WHERE :op > 78 AND :op <= 90;
SELECT churn(:op, :n, :client_id, :amount, :sweepers);
PGB
)
# the invariants, as queries that list violations (empty = pass)
invariants() {
	local label=$1
	check "$label: budget_used = discounts of held + confirmed reservations" \
		"$(query "$DB" "SELECT coalesce(string_agg(p.id || ':' || p.budget_used || '<>' || coalesce(s.d, 0), ' '), 'none')
		                  FROM coupon.policy p
		                  LEFT JOIN (SELECT c.policy_id, sum(r.discount) d
		                               FROM coupon.reservation r JOIN coupon.coupon c ON c.id = r.coupon_id
		                              WHERE r.status IN ('held', 'confirmed') GROUP BY 1) s ON s.policy_id = p.id
		                 WHERE p.budget IS NOT NULL AND p.budget_used <> coalesce(s.d, 0)")" "none"
	check "$label: budget_used within budget" \
		"$(query "$DB" "SELECT count(*) FROM coupon.policy WHERE budget_used > coalesce(budget, budget_used)
		                  OR budget_used < 0")" "0"
	check "$label: no coupon with two held reservations" \
		"$(query "$DB" "SELECT count(*) FROM (SELECT coupon_id FROM coupon.reservation WHERE status = 'held'
		                  GROUP BY 1 HAVING count(*) > 1) s")" "0"
	check "$label: reserved <=> one held reservation" \
		"$(query "$DB" "SELECT count(*) FROM coupon.coupon c
		                 WHERE (c.status = 'reserved') <> EXISTS (SELECT 1 FROM coupon.reservation r
		                        WHERE r.coupon_id = c.id AND r.status = 'held')")" "0"
	check "$label: balance = starting value - confirmed discounts, never negative" \
		"$(query "$DB" "SELECT count(*) FROM coupon.coupon c
		                  JOIN coupon.policy p ON p.id = c.policy_id
		                 WHERE p.discount_type = 'balance'
		                   AND (c.balance < 0 OR c.balance > p.discount_value
		                        OR c.balance <> p.discount_value - (SELECT coalesce(sum(r.discount), 0)
		                              FROM coupon.reservation r WHERE r.coupon_id = c.id AND r.status = 'confirmed'))")" "0"
	check "$label: a balance coupon is used exactly when its balance is 0 (unless held)" \
		"$(query "$DB" "SELECT count(*) FROM coupon.coupon c
		                  JOIN coupon.policy p ON p.id = c.policy_id
		                 WHERE p.discount_type = 'balance' AND c.status <> 'reserved'
		                   AND (c.status = 'used') <> (c.balance = 0)")" "0"
	check "$label: a fixed/percent coupon is used <=> one confirmed reservation" \
		"$(query "$DB" "SELECT count(*) FROM coupon.coupon c
		                  JOIN coupon.policy p ON p.id = c.policy_id
		                 WHERE p.discount_type <> 'balance'
		                   AND ((c.status = 'used') <> EXISTS (SELECT 1 FROM coupon.reservation r
		                           WHERE r.coupon_id = c.id AND r.status = 'confirmed')
		                     OR (SELECT count(*) FROM coupon.reservation r
		                          WHERE r.coupon_id = c.id AND r.status = 'confirmed') > 1)")" "0"
	check "$label: discounts as the policy says (fixed 1000; percent capped at 2500)" \
		"$(query "$DB" "SELECT count(*) FROM coupon.reservation r JOIN coupon.coupon c ON c.id = r.coupon_id
		                  JOIN coupon.policy p ON p.id = c.policy_id
		                 WHERE (p.discount_type = 'fixed' AND r.discount <> 1000)
		                    OR (p.discount_type = 'percent' AND r.discount <> least(r.order_amount * 1500 / 10000, 2500))
		                    OR r.discount > r.order_amount")" "0"
}

# run_phase LABEL SWEEPERS: churn with SWEEPERS clients (ids 0..SWEEPERS-1)
# running expire_reservations() concurrently with everything else
run_phase() {
	local label=$1 sweepers=$2
	psql_db "$DB" -c "TRUNCATE load_outcome, load_fault" >/dev/null
	diag "$label: 16 coupons, $CLIENTS clients x $PER_CLIENT operations, $sweepers concurrent sweeper(s)"
	pgbench_run "$DB" "$SCRIPT" -c "$CLIENTS" -j 4 -t "$PER_CLIENT" -D sweepers="$sweepers"
	diag "outcomes: $(query "$DB" "SELECT string_agg(op || ' ' || outcome || '=' || n, ', ' ORDER BY op, outcome)
	                               FROM (SELECT op, outcome, count(*) n FROM load_outcome GROUP BY 1, 2) s")"
	check "$label: every operation recorded an outcome" \
		"$(query "$DB" "SELECT count(*) FROM load_outcome")" "$((CLIENTS * PER_CLIENT))"
	check "$label: only the expected answers (no deadlock, no internal error)" \
		"$(query "$DB" "SELECT coalesce(string_agg(DISTINCT op || ' ' || outcome, ', '), 'none')
		                  FROM load_outcome
		                 WHERE (op, outcome) NOT IN (
		                       ('reserve', 'ok'), ('reserve', 'PT409 coupon_reserved'),
		                       ('reserve', 'PT409 coupon_used'), ('reserve', 'PT422 budget_exhausted'),
		                       ('release', 'ok'), ('release', 'none'), ('release', 'PT409 reservation_confirmed'),
		                       ('confirm', 'ok'), ('confirm', 'none'), ('confirm', 'PT409 reservation_released'),
		                       ('confirm', 'PT409 reservation_expired'),
		                       ('expire', 'ok'), ('lapse', 'ok'), ('validate', 'ok'), ('reissue', 'ok'))")" "none"
	if [ "$(query "$DB" "SELECT count(*) FROM load_fault")" != 0 ]; then
		diag "faults (first 3):"
		query "$DB" "SELECT op || ' ' || sqlstate || ': ' || message || E'\\n' || coalesce(detail, '') || E'\\n' || coalesce(context, '')
		               FROM load_fault LIMIT 3" | sed 's/^/#   /'
	fi
	check "$label: reserve, release, confirm and expire each succeeded" \
		"$(query "$DB" "SELECT count(DISTINCT op) FROM load_outcome WHERE outcome = 'ok'
		                  AND op IN ('reserve', 'release', 'confirm', 'expire')")" "4"
	invariants "$label, before the final sweep"
	if [ "$sweepers" = "$CLIENTS" ]; then
		# every lapse was followed by its client's own sweep
		check "$label: no lapsed hold is left behind" \
			"$(query "$DB" "SELECT count(*) FROM coupon.reservation WHERE status = 'held' AND expires_at <= now()")" "0"
	fi
	psql_db "$DB" -c "SELECT coupon.expire_reservations(1000000)" >/dev/null
}

# one sweeper among the clients, then every client sweeping
run_phase "one sweeper" 1
run_phase "all sweep" "$CLIENTS"
diag "state: $(query "$DB" "SELECT string_agg(format('%s issued=%s reserved=%s used=%s budget_used=%s',
                              name, available, reserved, used, budget_used), '; ' ORDER BY policy_id)
                              FROM coupon.policy_stats")"

# drain: every hold lapses and is swept; the budgets then count confirmed discounts only
psql_db "$DB" -c "UPDATE coupon.reservation SET expires_at = now() - interval '1 second' WHERE status = 'held'" \
	-c "SELECT coupon.expire_reservations(1000000)" >/dev/null
check "after drain: no held reservations, no reserved coupons" \
	"$(query "$DB" "SELECT (SELECT count(*) FROM coupon.reservation WHERE status = 'held')
	                     + (SELECT count(*) FROM coupon.coupon WHERE status = 'reserved')")" "0"
invariants "after drain"

load_finish
