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
#include "outbox.h"
#include "rowwrite.h"

/*
 * The relations whose ids a cache was built from.  Kept apart from the
 * caches themselves, which a reset empties: an invalidation that arrives
 * after a reset but concerns a relation read before it must still count.
 * Ids only ever join; after a DROP and CREATE EXTENSION the old ones cost
 * nothing but a comparison.
 */
#define MAX_WATCHED 64
static Oid	watched[MAX_WATCHED];
static int	nwatched = 0;

/* a cache was built from relid: its invalidations reset the caches */
void
cacheinval_watch(Oid relid)
{
	for (int i = 0; i < nwatched; i++)
		if (watched[i] == relid)
			return;
	if (nwatched == MAX_WATCHED)
	{
		/* the oldest ids belong to extensions long dropped */
		memmove(watched, watched + 1, sizeof(Oid) * (MAX_WATCHED - 1));
		nwatched--;
	}
	watched[nwatched++] = relid;
}

/* forget everything when one of the extension's relations (or all) changed */
static void
cacheinval_relcache_callback(Datum arg, Oid relid)
{
	bool		ours = (relid == InvalidOid);

	for (int i = 0; i < nwatched && !ours; i++)
		ours = (watched[i] == relid);
	if (!ours)
		return;
	fetch_reset();
	rowwrite_reset();
	factcache_reset();
	outbox_reset();
}

/* register the callback */
void
coupon_cacheinval_init(void)
{
	CacheRegisterRelcacheCallback(cacheinval_relcache_callback, (Datum) 0);
}
