#!/usr/bin/env bash
# Outbox to Redis: every committed event once or more, per aggregate in
# commit order, nothing of what was rolled back.
#
# Eight pgbench clients toggle holds on twenty coupons at random (reserve
# when free, release when held; a client that loses the race gets an error
# and its subtransaction writes nothing), so the coupons' events race each
# other; a coupon's own changes are serialised by its row lock, so its
# events must reach the stream as issued, reserved, released, reserved, ...
# in event_id order (each transaction takes its id before it queues on the
# lock, so ordering by transaction id would fail).  A rolled-back transaction and a savepoint rolled back
# inside a committed one must publish nothing of their own.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

relay_start <<'CONF'
CONF

M=$(q "SELECT id FROM coupon.create_merchant('events shop')")
P=$(q "SELECT id FROM coupon.create_policy($M, 'fixed 500', 'fixed', 500, per_user_limit => NULL)")
psql_saga >/dev/null <<SQL
SELECT count(coupon.issue($P, 'u' || g)) FROM generate_series(1, 20) g;
CREATE SEQUENCE ord;
CREATE TABLE toggle_log (n integer);
-- the log row gives the transaction its id before it queues on the
-- coupon's lock, so transaction ids do not follow commit order
CREATE FUNCTION toggle(n integer, m bigint) RETURNS text
LANGUAGE plpgsql AS \$f\$
DECLARE
	cid bigint := (SELECT id FROM coupon.coupon WHERE user_id = 'u' || n);
	r bigint;
BEGIN
	INSERT INTO toggle_log VALUES (n);
	r := (SELECT id FROM coupon.reservation WHERE coupon_id = cid AND status = 'held');
	IF r IS NULL THEN
		PERFORM coupon.reserve(cid, 'u' || n, m, 'o-' || nextval('ord'), 5000);
		RETURN 'reserved';
	END IF;
	PERFORM coupon.release(r);
	RETURN 'released';
EXCEPTION WHEN OTHERS THEN
	RETURN 'lost the race';
END
\$f\$;
SQL
SCRIPT=$(scratch_file toggle.pgbench <<'PGB'
\set n random(1, 20)
SELECT toggle(:n, :m);
PGB
)
if as_pg pgbench -n -c 8 -j 2 -t 300 -D m="$M" -f "$SCRIPT" "$SAGA_DB" >"$SAGA_DIR/pgbench.log" 2>&1; then
	ok "pgbench: 2400 hold toggles by 8 clients on 20 coupons"
else
	not_ok "pgbench: 2400 hold toggles by 8 clients on 20 coupons"
	tail -5 "$SAGA_DIR/pgbench.log" | sed 's/^/#   /'
fi

# rolled back: a whole transaction, and a savepoint inside a committed one
psql_saga >/dev/null <<SQL
BEGIN;
SELECT coupon.issue($P, 'ghost');
ROLLBACK;
BEGIN;
SELECT coupon.issue($P, 'sp_keep');
SAVEPOINT s;
SELECT coupon.issue($P, 'sp_drop');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SQL

wait_relay_drained 120
stream_dump "$SAGA_DIR/stream.txt"
outbox_ids "$SAGA_DIR/outbox.txt"
check "events were written (outbox rows)" "$(($(wc -l <"$SAGA_DIR/outbox.txt") > 2000))" 1
read -r missing dups unknown <<<"$(stream_vs_outbox "$SAGA_DIR/stream.txt" "$SAGA_DIR/outbox.txt")"
check "every committed event is in the stream" "$missing" 0
check "the stream has no event the outbox lacks" "$unknown" 0
diag "duplicates in the stream (allowed, at least once): $dups"
check "an aborted transaction published nothing" "$(awk '$7 == "ghost"' "$SAGA_DIR/stream.txt" | wc -l)" 0
check "a savepoint rolled back published nothing of its own" \
	"$(awk '$7 == "sp_drop"' "$SAGA_DIR/stream.txt" | wc -l)" 0
check "the committed part around that savepoint was published" \
	"$(awk '$7 == "sp_keep" && $3 == "coupon.issued"' "$SAGA_DIR/stream.txt" | wc -l)" 1

# per coupon, first copies in stream order: ids rising, holds alternating
out=$(python3 - "$SAGA_DIR/stream.txt" <<'PY'
import collections, sys
seen, per = set(), collections.defaultdict(list)
for line in open(sys.argv[1]):
    entry, eid, typ, agg, aid = line.split()[:5]
    if eid in seen:
        continue
    seen.add(eid)
    per[(agg, aid)].append((int(eid), typ))
bad_order = bad_seq = toggles = 0
for key, evs in per.items():
    if key[0] != "coupon":
        continue
    if [e for e, _ in evs] != sorted(e for e, _ in evs):
        bad_order += 1
    types = [t for _, t in evs]
    want = ["coupon.issued"] + ["coupon.reserved" if i % 2 == 0 else "coupon.released"
                                for i in range(len(types) - 1)]
    if types != want:
        bad_seq += 1
        print("#   coupon %s: %s" % (key[1], " ".join(t.split(".")[1] for t in types[:12])))
    toggles += len(types) - 1
print(bad_order, bad_seq, toggles)
PY
)
read -r bad_order bad_seq toggles <<<"$(tail -1 <<<"$out")"
diag "stream: $(wc -l <"$SAGA_DIR/stream.txt") entries, $toggles hold events on the 20 coupons"
check "per coupon, events reach the stream in event_id order" "$bad_order" 0
check "per coupon, holds alternate reserved, released, ... (commit order)" "$bad_seq" 0
check "the toggles that won are all in the stream" "$toggles" \
	"$(q "SELECT count(*) FROM coupon.outbox WHERE event_type IN ('coupon.reserved', 'coupon.released')")"
head -n -1 <<<"$out"
check "relay_status counts what it published" \
	"$(q "SELECT published >= (SELECT count(*) FROM coupon.outbox) FROM coupon.relay_status")" t

saga_finish
