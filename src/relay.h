/*
 * relay.h
 *		The relay worker's Redis client (hiredis): a connection, pipelined
 *		commands, and the one multi-reply command it needs (SCAN).
 */
#ifndef COUPON_RELAY_H
#define COUPON_RELAY_H

#include <stdbool.h>
#include <stddef.h>

typedef struct RedisLink RedisLink;

/*
 * Connect to a redis:// (host, port, optional password and database) or
 * unix:// (socket path) URL; commands time out after timeout_ms.  NULL on
 * failure, with the reason in err.
 */
extern RedisLink *redis_open(const char *url, int timeout_ms, char *err, size_t errlen);

/* close the connection (NULL is allowed) */
extern void redis_close(RedisLink *link);

/* is url one redis_open() can parse?  (the setting's check) */
extern bool redis_url_ok(const char *url, const char **why);

/* queue one command (argv of argc strings, with lengths) in the pipeline */
extern void redis_append(RedisLink *link, int argc, const char **argv, const size_t *argvlen);

/*
 * Send the queued commands and read every reply; false, with the first
 * error in err, if the connection failed (redis_usable() is then false:
 * close it) or any reply was an error.
 */
extern bool redis_flush(RedisLink *link, char *err, size_t errlen);

/*
 * Delete every key matching pattern (SCAN ... MATCH, then UNLINK); false on
 * an error, as redis_flush.
 */
extern bool redis_delete_matching(RedisLink *link, const char *pattern, char *err, size_t errlen);

/* is the connection still good?  (false after an I/O error: close it) */
extern bool redis_usable(const RedisLink *link);

/*
 * Was the process's latch set (a commit's wake-up) while a call here
 * waited on Redis?  Asking clears it; the caller then looks for work
 * instead of sleeping.
 */
extern bool redis_woken(void);

#endif							/* COUPON_RELAY_H */
