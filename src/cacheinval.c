/*
 * cacheinval.c
 *		The one invalidation path of the backend's caches.
 *
 * A backend keeps three things it read from the catalogs or the extension's
 * tables: the tables' and indexes' ids and column numbers (fetch.c), their
 * identity sequences and domains (rowwrite.c), and validate()'s copies of
 * policies and merchants (factcache.c).  All of them go on a relcache
 * invalidation of one of the extension's tables or indexes, which
 * PostgreSQL sends for DDL, for DROP
 * and CREATE EXTENSION, and, through the fact-change triggers, for every
 * committed change of a policy or merchant; or on a reset of all caches.
 * Being PostgreSQL's own invalidation, it is transactional, reaches other
 * sessions at commit (at COMMIT PREPARED for a prepared transaction),
 * undoes a session's own uncommitted state on abort, and needs no shared
 * memory of the extension.
 */
#include "postgres.h"

#include "utils/inval.h"

#include "coupon.h"
#include "factcache.h"
#include "fetch.h"
#include "rowwrite.h"

/* forget everything when one of the extension's relations (or all) changed */
static void
cacheinval_relcache_callback(Datum arg, Oid relid)
{
	if (!fetch_is_cached_relation(relid))
		return;
	fetch_reset();
	rowwrite_reset();
	factcache_reset();
}

/* register the callback */
void
coupon_cacheinval_init(void)
{
	CacheRegisterRelcacheCallback(cacheinval_relcache_callback, (Datum) 0);
}
