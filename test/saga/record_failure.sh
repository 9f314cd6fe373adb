#!/usr/bin/env bash
# An answer that cannot be recorded.  A user's trigger on coupon.payment
# refuses one payment's move out of 'authorizing', so recording its gateway
# approval fails inside the saga's per-answer subtransaction.  The runner
# must roll back just that answer, mark the payment needs_attention with
# the reason, and go on: the worker keeps running and records the other
# answers of the batch, and process_payments() in a backend does the same
# and leaves its session usable (before 0.8's call contexts had one per
# subtransaction, a failed answer could unbalance the snapshot stack).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

saga_start <<CONF
coupon.max_attempts = 1
CONF

M=$(q "SELECT id FROM coupon.create_merchant('record failure shop')")
q "CREATE FUNCTION public.refuse_marked() RETURNS trigger LANGUAGE plpgsql AS \$f\$
   BEGIN
     IF NEW.order_id LIKE 'refused-%' AND OLD.state = 'authorizing' AND NEW.state IN ('approved', 'completed') THEN
       RAISE EXCEPTION 'approval of % refused by a test trigger', NEW.order_id;
     END IF;
     RETURN NEW;
   END \$f\$;
   CREATE TRIGGER refuse_marked BEFORE UPDATE ON coupon.payment
     FOR EACH ROW EXECUTE FUNCTION public.refuse_marked()" >/dev/null

diag "--- the worker"
PID0=$(q "SELECT pid FROM coupon.worker_status")
read -r BAD GOOD <<<"$(q "SELECT (coupon.pay($M, 'u1', 'refused-1', 5000, NULL, 'ok_r1')).id || ' ' ||
                                 (coupon.pay($M, 'u2', 'fine-1', 5000, NULL, 'ok_f1')).id")"
wait_state "$GOOD" completed 60
wait_state "$BAD" needs_attention 60
check "the refused answer left the payment needing attention, with the trigger's reason" \
	"$(q "SELECT last_error LIKE '%refused by a test trigger%' FROM coupon.payment WHERE id = $BAD")" t
check "the worker is still the one that started (it did not die)" \
	"$(q "SELECT pid FROM coupon.worker_status WHERE state IN ('idle', 'working')")" "$PID0"
NEXT=$(q "SELECT id FROM coupon.pay($M, 'u3', 'fine-2', 5000, NULL, 'ok_f2')")
wait_state "$NEXT" completed 60

diag "--- process_payments() in a backend (no workers)"
q "ALTER SYSTEM SET coupon.workers = 0" >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$SAGA_DIR/data" -l "$SAGA_DIR/server.log" -w -t 120 restart >/dev/null
check "no worker runs now" "$(q "SELECT count(*) FROM coupon.worker_status")" 0
read -r BAD2 GOOD2 <<<"$(q "SELECT (coupon.pay($M, 'u4', 'refused-2', 5000, NULL, 'ok_r2')).id || ' ' ||
                                   (coupon.pay($M, 'u5', 'fine-3', 5000, NULL, 'ok_f3')).id")"
out=$(psql_saga -At <<SQL
SELECT sum(coupon.process_payments(10)) >= 2 FROM generate_series(1, 1);
SELECT coupon.process_payments(10) >= 0;
SELECT coupon.process_payments(10) >= 0;
SELECT state FROM coupon.payment WHERE id = $GOOD2;
SELECT 'session still usable';
SQL
)
diag "  $(echo $out)"
check "process_payments() records the good answer, and the session goes on" \
	"$(tail -2 <<<"$out" | tr '\n' ' ')" "completed session still usable "
check "the refused one needs attention, with the trigger's reason" \
	"$(q "SELECT state || ' ' || (last_error LIKE '%refused by a test trigger%') FROM coupon.payment WHERE id = $BAD2")" \
	"needs_attention true"

saga_finish
