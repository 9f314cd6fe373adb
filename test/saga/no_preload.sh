#!/usr/bin/env bash
# A server without shared_preload_libraries = 'coupon' answers as a
# preloaded one does, only slower: the library is loaded by the first call
# in each session, validate()'s copies follow PostgreSQL's invalidation
# (the isolation spec validate_cache passes unchanged), a checkout and a
# payment (process_payments(), no workers) go through; and prepared
# transactions around policy changes and checkouts behave: a policy change
# prepared, then committed from another session, reaches a session's copies;
# a hold prepared, then rolled back, gives the coupon back; an fcfs unit
# taken in a prepared transaction that is rolled back can be issued again
# (a sold-out mark seen there is not kept).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

saga_start <<CONF
shared_preload_libraries = 'pg_cron'
coupon.workers = 0
max_prepared_transactions = 10
CONF

check "the server does not preload coupon" "$(q "SHOW shared_preload_libraries")" "pg_cron"
check "worker_status is empty (no shared memory, no workers)" \
	"$(q "SELECT count(*) FROM coupon.worker_status")" 0

diag "--- validate_cache.spec against this server"
ISO=$SAGA_DIR/iso
mkdir -p "$ISO"
cp -r "$COUPON_ROOT/test/isolation/specs" "$COUPON_ROOT/test/isolation/expected" "$ISO/"
chown -R postgres:postgres "$ISO"
if (cd "$ISO" && as_pg "$(pg_config --pkglibdir)/pgxs/src/test/isolation/pg_isolation_regress" \
	--host="$PGHOST" --port="$PGPORT" --inputdir="$ISO" --outputdir="$ISO/out" \
	--bindir="$PGBIN" --load-extension=coupon --dbname=iso_no_preload validate_cache \
	>"$ISO/run.log" 2>&1); then
	ok "isolation spec validate_cache passes without preloading"
else
	not_ok "isolation spec validate_cache passes without preloading"
	sed 's/^/#   /' "$ISO/run.log" | tail -20
	[ -f "$ISO/out/regression.diffs" ] && sed 's/^/#   /' "$ISO/out/regression.diffs" | head -40
fi

diag "--- a checkout and a payment"
M=$(q "SELECT id FROM coupon.create_merchant('no preload shop')")
P=$(q "SELECT id FROM coupon.create_policy($M, 'five hundred', 'fixed', 500, per_user_limit => NULL)")
C=$(q "SELECT id FROM coupon.issue($P, 'np-1')")
check "validate, reserve and confirm" \
	"$(q "SELECT (SELECT reason FROM coupon.validate($C, 'np-1', $M, 5000)) || ' ' ||
	             (coupon.confirm((coupon.reserve($C, 'np-1', $M, 'np-o1', 5000)).id)).status")" "ok confirmed"
C2=$(q "SELECT id FROM coupon.issue($P, 'np-2')")
Y=$(q "SELECT id FROM coupon.pay($M, 'np-2', 'np-o2', 8000, ARRAY[$C2], 'ok_np2')")
q "SELECT coupon.process_payments(10)" >/dev/null
check "a payment goes through with process_payments()" \
	"$(q "SELECT state || ' ' || approved_amount FROM coupon.payment WHERE id = $Y")" "completed 7500"

diag "--- prepared transactions"
C3=$(q "SELECT id FROM coupon.issue($P, 'np-3')")
# a policy change prepared in one session, committed from another
psql_saga -c "SELECT reason FROM coupon.validate($C3, 'np-3', $M, 5000)" >/dev/null
psql_saga >/dev/null <<SQL
BEGIN;
SELECT coupon.set_policy_status($P, 'paused');
PREPARE TRANSACTION 'np_pause';
SQL
check "while prepared, the pause is not seen" \
	"$(q "SELECT reason FROM coupon.validate($C3, 'np-3', $M, 5000)")" "ok"
# one session validates before and after another commits the prepared pause
SESSION=$(psql_saga -At <<SQL
SELECT reason FROM coupon.validate($C3, 'np-3', $M, 5000);
\! psql -X -q -h "$PGHOST" -p "$PGPORT" -d $SAGA_DB -c "COMMIT PREPARED 'np_pause'"
SELECT reason FROM coupon.validate($C3, 'np-3', $M, 5000);
SQL
)
check "a session's copies follow COMMIT PREPARED from another session" "$(echo $SESSION)" "ok policy_inactive"
q "SELECT coupon.set_policy_status($P, 'active')" >/dev/null

# a hold prepared, then rolled back
psql_saga >/dev/null <<SQL
BEGIN;
SELECT coupon.reserve($C3, 'np-3', $M, 'np-o3', 5000);
PREPARE TRANSACTION 'np_hold';
SQL
# (the prepared transaction keeps its row lock: another hold waits, here
# until a lock_timeout that cannot but expire)
check_match "while the hold is prepared, another hold of the coupon waits for it" \
	"$(q "SET lock_timeout = '100ms'; SELECT saga_try('SELECT coupon.reserve($C3, ''np-3'', $M, ''np-o4'', 5000)')")" \
	'^55P03 '

psql_saga -c "ROLLBACK PREPARED 'np_hold'" >/dev/null
check "after ROLLBACK PREPARED the coupon can be held" \
	"$(q "SELECT status FROM coupon.reserve($C3, 'np-3', $M, 'np-o4', 5000)")" "held"

# the last fcfs unit taken in a prepared transaction that is rolled back
F=$(q "SELECT id FROM coupon.create_policy($M, 'one left', 'fixed', 100, issue_method => 'fcfs',
                                           total_quantity => 1, per_user_limit => NULL)")
SESSION=$(psql_saga -At <<SQL
BEGIN;
SELECT status FROM coupon.issue($F, 'np-f1');
SELECT saga_try('SELECT coupon.issue($F, ''np-f2'')');
PREPARE TRANSACTION 'np_fcfs';
ROLLBACK PREPARED 'np_fcfs';
SELECT status FROM coupon.issue($F, 'np-f3');
SQL
)
check "an fcfs unit of a rolled-back prepared transaction is issued again in the same session" \
	"$(echo $SESSION)" "issued PT409 sold_out issued"

saga_finish
