/*
 * coupon.h
 *		Settings and module-wide constants of the coupon extension.
 */
#ifndef COUPON_H
#define COUPON_H

#include "postgres.h"

/* Largest amount accepted anywhere, in minor units (docs/concepts.md, "Money and percentages"). */
#define COUPON_MAX_AMOUNT		INT64CONST(1000000000000000)

/* Caller ids (user_id, order_id) and names are 1..200 characters. */
#define COUPON_MAX_ID_LEN		200

/* A limited policy's stock is split over at most this many rows. */
#define COUPON_STOCK_SHARDS		64

/* First key of the two-int advisory locks, so ours never meet the app's. */
#define COUPON_LOCK_PER_USER	0x43500001
#define COUPON_LOCK_IDEMPOTENCY	0x43500002
#define COUPON_LOCK_ORDER		0x43500003
#define COUPON_LOCK_PAYMENT_KEY	0x43500004

/* settings (coupon.c) */
extern char *coupon_code_secret;
extern char *coupon_trace_id;
extern int	coupon_reservation_ttl;
extern int	coupon_expire_lookback;
extern int	coupon_code_max_failures;
extern int	coupon_code_failure_window;

/* the payment saga's settings (coupon.c) */
extern char *coupon_database;
extern int	coupon_workers;
extern char *coupon_gateway_url;
extern char *coupon_gateway_secret;
extern int	coupon_gateway_timeout_ms;
extern int	coupon_max_inflight;
extern int	coupon_max_attempts;
extern int	coupon_retry_base_ms;
extern int	coupon_retry_max_ms;
extern int	coupon_naptime_ms;
extern int	coupon_circuit_failures;
extern int	coupon_circuit_cooldown_ms;
extern int	coupon_reconcile_page_size;

/* the outbox relay's settings (coupon.c) */
extern bool coupon_relay_enabled;
extern char *coupon_redis_url;
extern char *coupon_redis_prefix;
extern int	coupon_redis_stream_maxlen;
extern int	coupon_redis_timeout_ms;
extern int	coupon_outbox_retention;

/* is this a trace id (1..64 of letters, digits, '.', '_', '-')? (coupon.c) */
extern bool coupon_trace_id_ok(const char *id);

/* prefix and nbytes strong random bytes in hex (coupon.c) */
extern char *coupon_random_hex(const char *prefix, int nbytes);

/* the SHA-256 of len bytes into digest (PG_SHA256_DIGEST_LENGTH bytes; coupon.c) */
extern void coupon_sha256(const void *data, size_t len, uint8 *digest);

/* per-part initialisation, called from _PG_init */
extern void coupon_shmem_init(void);
extern void coupon_code_init(void);
extern void coupon_cacheinval_init(void);
extern void coupon_relay_worker_init(void);

/* a backend cache was built from relid (cacheinval.c) */
extern void cacheinval_watch(Oid relid);

#endif							/* COUPON_H */
