#!/usr/bin/env bash
# The reason table is one: docs/errors.md lists exactly the reasons of
# coupon.reasons(), each with its SQLSTATE and hint, in the same words; no
# SQL or PL/pgSQL function of the extension raises a PTnnn error itself
# (they call raise_error(), which takes both from the table); and
# raise_error() raises what the table says, with the DETAIL escaped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DB=load_reasons
create_db "$DB"

# "PTnnn|reason|hint" per row of the table in docs/errors.md
from_docs() {
	sed -n 's/^| `\(PT[0-9][0-9][0-9]\)` | `\([a-z_]*\)` | \(.*\) |$/\1|\2|\3/p' "$ROOT/docs/errors.md" | LC_ALL=C sort
}
from_table() {
	query "$DB" "SELECT sqlstate || '|' || reason || '|' || hint FROM coupon.reasons()" | LC_ALL=C sort
}
docs=$(from_docs)
table=$(from_table)
check "docs/errors.md lists $(wc -l <<<"$table") reasons, with the SQLSTATE and hint of coupon.reasons()" \
	"$docs" "$table"
[ "$docs" = "$table" ] || diff <(echo "$docs") <(echo "$table") | sed 's/^/#   /' || true

check "no SQL or PL/pgSQL function of the extension raises a PTnnn error itself" \
	"$(query "$DB" "SELECT coalesce(string_agg(p.oid::regprocedure::text, ', '), 'none')
	                  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
	                 WHERE p.pronamespace = 'coupon'::regnamespace AND l.lanname IN ('sql', 'plpgsql')
	                   AND p.prosrc ~ 'PT[0-9]{3}'")" "none"

# raise_error: the table's SQLSTATE and hint, the members of detail escaped
query "$DB" "CREATE FUNCTION pg_temp.caught() RETURNS text LANGUAGE plpgsql AS \$\$
DECLARE st text; msg text; dt text; ht text;
BEGIN
	PERFORM coupon.raise_error('sold_out', 'policy 7 is sold out',
							   jsonb_build_object('policy_id', 7, 'note', 'a \"quoted\" \\ word'));
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, dt = PG_EXCEPTION_DETAIL,
							ht = PG_EXCEPTION_HINT;
	RETURN concat_ws(' | ', st, msg,
					 dt::jsonb = jsonb_build_object('reason', 'sold_out', 'policy_id', 7,
													'note', 'a \"quoted\" \\ word'),
					 ht = (SELECT hint FROM coupon.reasons() WHERE reason = 'sold_out'));
END \$\$;
SELECT pg_temp.caught()" >"$LOAD_DIR/caught.out" 2>&1 || true
check "raise_error raises the reason's SQLSTATE, message, escaped DETAIL and hint" \
	"$(tail -1 "$LOAD_DIR/caught.out")" "PT409 | policy 7 is sold out | t | t"

load_finish
