/*
 * relay_cache.h
 *		The Redis read caches the relay worker keeps (relay_cache.c), and
 *		the names of the relay's Redis keys.  Inside the worker's
 *		transactions and SPI.
 */
#ifndef COUPON_RELAY_CACHE_H
#define COUPON_RELAY_CACHE_H

#include "relay.h"

/* a Redis key: coupon.redis_prefix, ':' and the rest (palloc'd) */
extern char *relay_key(const char *fmt,...) pg_attribute_printf(1, 2);

/*
 * Queue the refresh of the caches a batch touched: policy_ids and
 * coupon_ids are bigint arrays of distinct ids, or (Datum) 0 for none.
 * The caller flushes the pipeline.
 */
extern void relay_cache_refresh(RedisLink *link, Datum policy_ids, Datum coupon_ids);

/*
 * Empty the caches and refill them from the tables, a chunk at a time;
 * false after a Redis failure, with the reason in err.
 */
extern bool relay_cache_rebuild(RedisLink *link, char *err, size_t errlen);

#endif							/* COUPON_RELAY_CACHE_H */
