#!/usr/bin/env bash
# Load test: validate(), issue() and reserve() read rows straight through
# the primary-key indexes with relation ids cached per backend, and the
# cache is cleared by relcache invalidations.  32 clients call them while
# another session keeps invalidating the tables (ANALYZE, and a column
# comment changed in a loop).  No client may fail: an invalidation arriving
# in the middle of a read must not leave it with a cleared id.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

DB=load_invalidation
CLIENTS=32
ROUNDS=300

create_db "$DB"
psql_db "$DB" <<'SQL'
SELECT id AS m FROM coupon.create_merchant('load invalidation') \gset
SELECT id AS p FROM coupon.create_policy(:m, 'direct', 'fixed', 1000, per_user_limit => NULL) \gset
SELECT count(coupon.issue(:p, 'u' || (i % 100))) AS issued FROM generate_series(1, 2000) i;
SQL
PID=$(query "$DB" "SELECT min(id) FROM coupon.policy")
MID=$(query "$DB" "SELECT min(id) FROM coupon.merchant")
CMIN=$(query "$DB" "SELECT min(id) FROM coupon.coupon")

SCRIPT=$(scratch_file invalidation.pgbench <<'PGB'
\set cid :cmin + random(0, 1999)
\set uid :cid % 100
SELECT ok FROM coupon.validate(:cid, 'u' || :uid, :mid, 50000);
SELECT id FROM coupon.issue(:pid, 'x' || :client_id);
PGB
)
INVALIDATE=$(scratch_file invalidate.sql <<'SQL'
ANALYZE coupon.coupon;
ANALYZE coupon.policy;
ANALYZE coupon.merchant;
COMMENT ON COLUMN coupon.coupon.balance IS 'Remaining stored value of a balance coupon; NULL for other types.';
SQL
)

# the invalidating session runs until the clients are done
(
	for _ in $(seq 1 200); do
		as_pg psql -X -q -d "$DB" -f "$INVALIDATE" >/dev/null 2>&1 || true
	done
) &
INV=$!
pgbench_run "$DB" "$SCRIPT" -M prepared -c "$CLIENTS" -j 2 -t "$ROUNDS" \
	-D cmin="$CMIN" -D mid="$MID" -D pid="$PID"
kill "$INV" 2>/dev/null || true
wait "$INV" 2>/dev/null || true

check "every issue() call made a coupon" \
	"$(query "$DB" "SELECT count(*) FROM coupon.coupon WHERE user_id LIKE 'x%'")" \
	"$((CLIENTS * ROUNDS))"

load_finish
