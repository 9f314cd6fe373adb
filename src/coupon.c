/*
 * coupon.c
 *		Module initialisation and the coupon.* settings.
 */
#include "postgres.h"

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "callctx.h"
#include "coupon.h"
#include "factcache.h"
#include "fetch.h"
#include "outbox.h"
#include "queue.h"
#include "relay.h"
#include "rowwrite.h"
#include "saga.h"
#include "shmem.h"
#include "spi_util.h"

PG_MODULE_MAGIC;

char	   *coupon_code_secret = NULL;
char	   *coupon_trace_id = NULL;
int			coupon_reservation_ttl = 900;
int			coupon_expire_lookback = 30;
int			coupon_code_max_failures = 5;
int			coupon_code_failure_window = 600;
char	   *coupon_database = NULL;
int			coupon_workers = 1;
char	   *coupon_gateway_url = NULL;
char	   *coupon_gateway_secret = NULL;
int			coupon_gateway_timeout_ms = 10000;
int			coupon_max_inflight = 64;
int			coupon_max_attempts = 8;
int			coupon_retry_base_ms = 200;
int			coupon_retry_max_ms = 60000;
int			coupon_naptime_ms = 1000;
int			coupon_circuit_failures = 5;
int			coupon_circuit_cooldown_ms = 5000;
int			coupon_reconcile_page_size = 1000;
bool		coupon_relay_enabled = true;
char	   *coupon_redis_url = NULL;
char	   *coupon_redis_prefix = NULL;
int			coupon_redis_stream_maxlen = 1000000;
int			coupon_redis_timeout_ms = 2000;
int			coupon_outbox_retention = 7 * 86400;

void		_PG_init(void);

/*
 * Is this a trace id: 1 to 64 letters, digits, '.', '_' and '-'?  Trace
 * ids are stored with payments and sent to the gateway as a header, so
 * they can carry nothing else.
 */
bool
coupon_trace_id_ok(const char *id)
{
	size_t		len = strlen(id);

	return len >= 1 && len <= 64 &&
		strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == len;
}

/* coupon.trace_id is empty or a trace id */
static bool
check_trace_id(char **newval, void **extra, GucSource source)
{
	const char *id = *newval;

	if (id == NULL || id[0] == '\0')
		return true;
	if (!coupon_trace_id_ok(id))
	{
		GUC_check_errdetail("A trace id is 1 to 64 letters, digits, '.', '_' or '-'.");
		return false;
	}
	return true;
}

/*
 * coupon.gateway_url must be empty or an http(s) URL with a host: anything
 * else is refused when set (ALTER SYSTEM, a reload keeps the old value),
 * so a worker never meets a URL its gateway client cannot use.
 */
static bool
check_gateway_url(char **newval, void **extra, GucSource source)
{
	const char *url = *newval;
	const char *host;

	if (url == NULL || url[0] == '\0')
		return true;
	if (pg_strncasecmp(url, "http://", 7) == 0)
		host = url + 7;
	else if (pg_strncasecmp(url, "https://", 8) == 0)
		host = url + 8;
	else
	{
		GUC_check_errdetail("The gateway URL must start with http:// or https://.");
		return false;
	}
	if (host[0] == '\0' || host[0] == '/')
	{
		GUC_check_errdetail("The gateway URL must name a host after the scheme.");
		return false;
	}
	for (const char *c = url; *c; c++)
		if ((unsigned char) *c <= ' ' || *c == 0x7f)
		{
			GUC_check_errdetail("The gateway URL must not contain spaces or control characters.");
			return false;
		}
	return true;
}

/* an integer setting of the saga, reloaded on SIGHUP */
static void
define_saga_int(const char *name, const char *desc, int *var, int boot, int min, int max,
				int flags)
{
	DefineCustomIntVariable(name, desc, NULL, var, boot, min, max, PGC_SIGHUP, flags,
							NULL, NULL, NULL);
}

/*
 * The payment saga's settings (docs/operations.md, "Settings").  The two
 * that shape the workers are fixed at server start; a library loaded later
 * (not preloaded: no workers) may not define such settings, so there they
 * are plain reloadable ones, read by nothing.
 */
static void
coupon_saga_guc_init(void)
{
	GucContext	at_start = process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP;

	DefineCustomStringVariable("coupon.database",
							   "Database the saga workers connect to (where the extension is installed).",
							   NULL, &coupon_database, "postgres", at_start, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("coupon.workers",
							"Number of saga background workers (0 = none; use process_payments()).",
							NULL, &coupon_workers, 1, 0, SAGA_MAX_WORKERS, at_start, 0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("coupon.gateway_url",
							   "Base URL of the payment gateway (http or https), e.g. http://127.0.0.1:8080.",
							   NULL, &coupon_gateway_url, "", PGC_SIGHUP, 0,
							   check_gateway_url, NULL, NULL);
	DefineCustomStringVariable("coupon.gateway_secret",
							   "Secret key the saga authenticates to the gateway with.",
							   NULL, &coupon_gateway_secret, "", PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);
	define_saga_int("coupon.gateway_timeout_ms",
					"Longest a gateway call may take before its outcome counts as unknown.",
					&coupon_gateway_timeout_ms, 10000, 100, 600000, GUC_UNIT_MS);
	define_saga_int("coupon.max_inflight",
					"Gateway calls one worker (or process_payments call) keeps in flight at once.",
					&coupon_max_inflight, 64, 1, 1000, 0);
	define_saga_int("coupon.max_attempts",
					"Gateway attempts of one saga step before the payment needs attention.",
					&coupon_max_attempts, 8, 1, 1000, 0);
	define_saga_int("coupon.retry_base_ms",
					"First retry delay of a failed gateway step; it doubles per attempt, with jitter.",
					&coupon_retry_base_ms, 200, 1, 3600000, GUC_UNIT_MS);
	define_saga_int("coupon.retry_max_ms",
					"Cap of the retry delay.",
					&coupon_retry_max_ms, 60000, 1, 86400000, GUC_UNIT_MS);
	define_saga_int("coupon.naptime_ms",
					"Longest a saga worker sleeps when nothing wakes it.",
					&coupon_naptime_ms, 1000, 10, 600000, GUC_UNIT_MS);
	define_saga_int("coupon.circuit_failures",
					"Gateway failures in a row that open the circuit breaker.",
					&coupon_circuit_failures, 5, 1, 100000, 0);
	define_saga_int("coupon.circuit_cooldown_ms",
					"How long an open circuit stops gateway calls before one probe call.",
					&coupon_circuit_cooldown_ms, 5000, 10, 3600000, GUC_UNIT_MS);
	DefineCustomIntVariable("coupon.reconcile_page_size",
							"Transactions reconcile() asks the gateway for in one page.",
							"A page must stay under the 1 MiB a gateway answer may take.",
							&coupon_reconcile_page_size, 1000, 1, 10000, PGC_SUSET, 0,
							NULL, NULL, NULL);
}

/* coupon.redis_url is empty or a URL the relay's Redis client can use */
static bool
check_redis_url(char **newval, void **extra, GucSource source)
{
	const char *why;

	if (*newval == NULL || (*newval)[0] == '\0' || redis_url_ok(*newval, &why))
		return true;
	GUC_check_errdetail("%s", why);
	return false;
}

/*
 * coupon.redis_prefix: 1 to 64 letters, digits, '.', '_', '-' or ':'.  No
 * glob characters: rebuild_redis_caches() deletes the keys matching
 * <prefix>:policy:*, which must not reach another tenant's keys.
 */
static bool
check_redis_prefix(char **newval, void **extra, GucSource source)
{
	const char *p = *newval;
	size_t		len = p ? strlen(p) : 0;

	if (len < 1 || len > 64 ||
		strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-:") != len)
	{
		GUC_check_errdetail("The Redis key prefix is 1 to 64 letters, digits, '.', '_', '-' or ':'.");
		return false;
	}
	return true;
}

/* The outbox and relay worker's settings (docs/events.md). */
static void
coupon_relay_guc_init(void)
{
	DefineCustomBoolVariable("coupon.relay",
							 "Start the relay worker, which publishes the outbox (Redis stream or NOTIFY).",
							 NULL, &coupon_relay_enabled, true,
							 process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP,
							 0, NULL, NULL, NULL);
	DefineCustomStringVariable("coupon.redis_url",
							   "Redis the relay publishes to: redis://[:password@]host[:port][/db] or unix:///socket/path; empty: NOTIFY coupon_events.",
							   NULL, &coupon_redis_url, "", PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   check_redis_url, NULL, NULL);
	DefineCustomStringVariable("coupon.redis_prefix",
							   "Prefix of the relay's Redis keys (letters, digits, . _ - :): <prefix>:events, <prefix>:policy:<id>, <prefix>:balance:<id>.",
							   NULL, &coupon_redis_prefix, "coupon", PGC_SIGHUP, 0,
							   check_redis_prefix, NULL, NULL);
	define_saga_int("coupon.redis_stream_maxlen",
					"Approximate length the relay trims the event stream to (XADD MAXLEN ~; 0 = never trim).",
					&coupon_redis_stream_maxlen, 1000000, 0, INT_MAX, 0);
	define_saga_int("coupon.redis_timeout_ms",
					"Longest the relay waits to connect to Redis or for a reply.",
					&coupon_redis_timeout_ms, 2000, 10, 600000, GUC_UNIT_MS);
	DefineCustomIntVariable("coupon.outbox_queue_size",
							"Entries of the ring through which the relay finds the events waiting in coupon.outbox_queue; when it is full, events go to the outbox itself (0: always).",
							NULL, &coupon_outbox_queue_size, 65536, 0, 16 * 1024 * 1024,
							process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP,
							0, NULL, NULL, NULL);
	define_saga_int("coupon.outbox_retention",
					"How long published events stay in the outbox (the audit trail) before the relay purges them.",
					&coupon_outbox_retention, 7 * 86400, 60, INT_MAX, GUC_UNIT_S);
}

/* declare the coupon.* settings and reserve the prefix */
static void
coupon_guc_init(void)
{
	DefineCustomStringVariable("coupon.code_secret",
							   "Key of the HMAC-SHA256 under which coupon codes are stored.",
							   "Changing it makes every unredeemed code unusable.",
							   &coupon_code_secret,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("coupon.trace_id",
							   "Trace id of the current request: stored with the payments it creates and sent to the gateway.",
							   "coupon.pre_request() sets it for each PostgREST request.",
							   &coupon_trace_id,
							   "",
							   PGC_USERSET,
							   GUC_NOT_IN_SAMPLE,
							   check_trace_id, NULL, NULL);
	DefineCustomIntVariable("coupon.reservation_ttl",
							"Seconds a reservation holds its coupon when reserve() is given no ttl.",
							NULL,
							&coupon_reservation_ttl,
							900, 1, 7 * 24 * 3600,
							PGC_USERSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("coupon.expire_lookback",
							"Days back that expire_coupons() looks for coupons to mark expired.",
							"Run expire_coupons() at least this often.",
							&coupon_expire_lookback,
							30, 1, 3650,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("coupon.code_max_failures",
							"Wrong codes one user may enter within coupon.code_failure_window.",
							NULL,
							&coupon_code_max_failures,
							5, 1, 1000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("coupon.code_failure_window",
							"Seconds over which wrong codes are counted.",
							NULL,
							&coupon_code_failure_window,
							600, 1, 7 * 24 * 3600,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	coupon_saga_guc_init();
	coupon_relay_guc_init();
	MarkGUCPrefixReserved("coupon");
}

/*
 * `prefix` followed by `nbytes` (at most 64) bytes from the strong random
 * source in hex: generated payment keys, trace ids, client credentials.
 */
char *
coupon_random_hex(const char *prefix, int nbytes)
{
	uint8		bits[64];
	StringInfoData s;

	if (nbytes > (int) sizeof(bits))
		elog(ERROR, "coupon_random_hex: at most %d bytes", (int) sizeof(bits));
	if (!pg_strong_random(bits, nbytes))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
	initStringInfo(&s);
	appendStringInfoString(&s, prefix);
	for (int i = 0; i < nbytes; i++)
		appendStringInfo(&s, "%02x", bits[i]);
	explicit_bzero(bits, sizeof(bits));
	return s.data;
}

/* the SHA-256 of `len` bytes: idempotency signatures, client secrets */
void
coupon_sha256(const void *data, size_t len, uint8 *digest)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, digest, PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
}

/* module entry point: each part's init, nothing else */
void
_PG_init(void)
{
	coupon_guc_init();
	coupon_shmem_init();
	coupon_code_init();
	coupon_callctx_init();
	coupon_cacheinval_init();
	coupon_saga_init();
	coupon_saga_worker_init();
	coupon_outbox_init();
	coupon_relay_worker_init();
}
