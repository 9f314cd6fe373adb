/*
 * relay.c
 *		The relay worker's Redis client, on hiredis (docs/events.md).
 *
 * The worker publishes a batch of events as one pipeline: every command is
 * queued, then written in one go and every reply read.  Once connected,
 * the socket is non-blocking and every wait for it is a WaitLatchOrSocket,
 * so a worker waiting on a slow Redis still answers a shutdown and dies
 * with the postmaster.  Nothing here allocates in a memory context:
 * hiredis allocates with malloc, so each function frees what it made
 * before it returns, and failures come back as false and a message (the
 * caller then closes the link and reconnects later).  The only error
 * raised is an interrupt's (a shutdown), which ends the process.
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "relay.h"

#define REDIS_DEFAULT_PORT 6379
#define URL_PART_LEN 256

/* a latch set (a commit) was consumed while waiting on Redis */
static bool woken = false;

struct RedisLink
{
	redisContext *ctx;
	int			queued;			/* commands appended, replies not yet read */
	int			timeout_ms;		/* longest wait for the socket */
};

/* the parts of a Redis URL */
typedef struct RedisUrl
{
	char		host[URL_PART_LEN];	/* or the socket path */
	bool		unix_socket;
	int			port;
	char		password[URL_PART_LEN];
	int			db;
} RedisUrl;

/* split url into its parts; false, with *why, if it is not one we take */
static bool
parse_url(const char *url, RedisUrl *u, const char **why)
{
	const char *p;
	const char *at;
	const char *end;
	size_t		len;

	memset(u, 0, sizeof(*u));
	u->port = REDIS_DEFAULT_PORT;
	if (strncmp(url, "unix://", 7) == 0)
	{
		if (url[7] != '/' || strlen(url + 7) >= URL_PART_LEN)
		{
			*why = "A unix:// URL names an absolute socket path, e.g. unix:///run/redis/redis.sock.";
			return false;
		}
		u->unix_socket = true;
		strlcpy(u->host, url + 7, sizeof(u->host));
		return true;
	}
	if (strncmp(url, "redis://", 8) != 0)
	{
		*why = "The Redis URL must start with redis:// or unix://.";
		return false;
	}
	p = url + 8;
	end = p + strcspn(p, "/");
	at = memchr(p, '@', end - p);
	if (at != NULL)
	{
		/* [user]:password@ -- the user part is ignored (Redis 5 AUTH) */
		const char *colon = memchr(p, ':', at - p);
		const char *pw = colon ? colon + 1 : p;

		if ((size_t) (at - pw) >= URL_PART_LEN)
		{
			*why = "The Redis password is too long.";
			return false;
		}
		memcpy(u->password, pw, at - pw);
		p = at + 1;
	}
	len = strcspn(p, ":/");
	if (len == 0 || len >= URL_PART_LEN)
	{
		*why = "The Redis URL must name a host, e.g. redis://127.0.0.1:6379.";
		return false;
	}
	memcpy(u->host, p, len);
	p += len;
	if (*p == ':')
	{
		char	   *stop;
		long		port = strtol(p + 1, &stop, 10);

		if (stop == p + 1 || port < 1 || port > 65535 || (*stop != '\0' && *stop != '/'))
		{
			*why = "The Redis port must be a number between 1 and 65535.";
			return false;
		}
		u->port = (int) port;
		p = stop;
	}
	if (*p == '/' && p[1] != '\0')
	{
		char	   *stop;
		long		db = strtol(p + 1, &stop, 10);

		if (stop == p + 1 || *stop != '\0' || db < 0 || db > 1000000)
		{
			*why = "The Redis database after the host is a number, e.g. redis://127.0.0.1:6379/0.";
			return false;
		}
		u->db = (int) db;
	}
	return true;
}

/* see relay.h */
bool
redis_url_ok(const char *url, const char **why)
{
	RedisUrl	u;

	return parse_url(url, &u, why);
}

/* run one command and check its reply; false with err on failure */
static bool
command_ok(redisContext *ctx, char *err, size_t errlen, int argc, const char **argv)
{
	redisReply *reply = redisCommandArgv(ctx, argc, argv, NULL);
	bool		ok = (reply != NULL && reply->type != REDIS_REPLY_ERROR);

	if (!ok)
		snprintf(err, errlen, "%s failed: %s", argv[0],
				 reply ? reply->str : (ctx->errstr[0] ? ctx->errstr : "no reply"));
	if (reply)
		freeReplyObject(reply);
	return ok;
}

/* see relay.h */
RedisLink *
redis_open(const char *url, int timeout_ms, char *err, size_t errlen)
{
	RedisUrl	u;
	const char *why;
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	redisContext *ctx;
	RedisLink  *link;

	if (!parse_url(url, &u, &why))
	{
		strlcpy(err, why, errlen);
		return NULL;
	}
	ctx = u.unix_socket ? redisConnectUnixWithTimeout(u.host, tv)
		: redisConnectWithTimeout(u.host, u.port, tv);
	if (ctx == NULL || ctx->err)
	{
		snprintf(err, errlen, "could not connect to Redis: %s",
				 ctx ? ctx->errstr : "out of memory");
		if (ctx)
			redisFree(ctx);
		return NULL;
	}
	if (redisSetTimeout(ctx, tv) != REDIS_OK)
	{
		snprintf(err, errlen, "could not set the Redis timeout: %s", ctx->errstr);
		redisFree(ctx);
		return NULL;
	}
	if (u.password[0] != '\0')
	{
		const char *argv[] = {"AUTH", u.password};

		if (!command_ok(ctx, err, errlen, 2, argv))
		{
			redisFree(ctx);
			return NULL;
		}
	}
	if (u.db != 0)
	{
		char		db[16];
		const char *argv[] = {"SELECT", db};

		snprintf(db, sizeof(db), "%d", u.db);
		if (!command_ok(ctx, err, errlen, 2, argv))
		{
			redisFree(ctx);
			return NULL;
		}
	}
	/* from here on every wait is a latch wait (wait_socket) */
	if (fcntl(ctx->fd, F_SETFL, fcntl(ctx->fd, F_GETFL) | O_NONBLOCK) != 0 ||
		(link = malloc(sizeof(RedisLink))) == NULL)
	{
		strlcpy(err, "could not set up the Redis connection", errlen);
		redisFree(ctx);
		return NULL;
	}
	ctx->flags &= ~REDIS_BLOCK;
	link->ctx = ctx;
	link->queued = 0;
	link->timeout_ms = timeout_ms;
	return link;
}

/* see relay.h */
void
redis_close(RedisLink *link)
{
	if (link == NULL)
		return;
	redisFree(link->ctx);
	free(link);
}

/* format one command into the output buffer; false only out of memory */
static bool
append_command(RedisLink *link, int argc, const char **argv, const size_t *argvlen)
{
	return redisAppendCommandArgv(link->ctx, argc, argv, argvlen) == REDIS_OK;
}

/* see relay.h */
void
redis_append(RedisLink *link, int argc, const char **argv, const size_t *argvlen)
{
	/* out of memory hiredis sets the context's error, which the flush reports */
	if (append_command(link, argc, argv, argvlen))
		link->queued++;
}

/*
 * Wait until the socket is ready for `events` (or the latch is set, which
 * is only a reason to look again); false once `deadline` has passed.
 */
static bool
wait_socket(RedisLink *link, int events, TimestampTz deadline)
{
	long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
	int			rc;

	if (left <= 0)
		return false;
	rc = WaitLatchOrSocket(MyLatch, events | WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						   link->ctx->fd, left, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
	{
		ResetLatch(MyLatch);
		woken = true;
		CHECK_FOR_INTERRUPTS();
	}
	return true;
}

/* see relay.h */
bool
redis_woken(void)
{
	bool		was = woken;

	woken = false;
	return was;
}

/* see relay.h */
bool
redis_usable(const RedisLink *link)
{
	return link->ctx->err == 0;
}

/* write out what is queued; false with err on failure */
static bool
write_all(RedisLink *link, TimestampTz deadline, char *err, size_t errlen)
{
	int			done = 0;

	for (;;)
	{
		if (redisBufferWrite(link->ctx, &done) != REDIS_OK)
		{
			snprintf(err, errlen, "Redis connection lost: %s", link->ctx->errstr);
			return false;
		}
		if (done)
			return true;
		if (!wait_socket(link, WL_SOCKET_WRITEABLE, deadline))
		{
			strlcpy(err, "Redis did not take the commands in time", errlen);
			return false;
		}
	}
}

/* the next reply, read as it arrives; NULL with err on failure */
static redisReply *
next_reply(RedisLink *link, TimestampTz deadline, char *err, size_t errlen)
{
	for (;;)
	{
		void	   *reply = NULL;

		if (redisGetReplyFromReader(link->ctx, &reply) != REDIS_OK)
		{
			snprintf(err, errlen, "Redis sent what is not a reply: %s", link->ctx->errstr);
			return NULL;
		}
		if (reply != NULL)
			return reply;
		if (!wait_socket(link, WL_SOCKET_READABLE, deadline))
		{
			strlcpy(err, "Redis did not answer in time", errlen);
			return NULL;
		}
		if (redisBufferRead(link->ctx) != REDIS_OK)
		{
			snprintf(err, errlen, "Redis connection lost: %s",
					 link->ctx->errstr[0] ? link->ctx->errstr : "closed");
			return NULL;
		}
	}
}

/* see relay.h */
bool
redis_flush(RedisLink *link, char *err, size_t errlen)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), link->timeout_ms);
	bool		ok = true;

	err[0] = '\0';
	if (!write_all(link, deadline, err, errlen))
		return false;
	while (link->queued > 0)
	{
		redisReply *reply = next_reply(link, deadline, err, errlen);

		if (reply == NULL)
			return false;
		link->queued--;
		if (reply->type == REDIS_REPLY_ERROR && ok)
		{
			snprintf(err, errlen, "Redis answered an error: %s", reply->str);
			ok = false;
		}
		freeReplyObject(reply);
	}
	return ok;
}

/* UNLINK the keys of one SCAN page; false with err on failure */
static bool
unlink_keys(RedisLink *link, const redisReply *keys, char *err, size_t errlen)
{
	size_t		n = keys->elements;
	const char **argv = malloc(sizeof(char *) * (n + 1));
	size_t	   *argvlen = malloc(sizeof(size_t) * (n + 1));
	bool		ok = (argv != NULL && argvlen != NULL);

	if (ok)
	{
		argv[0] = "UNLINK";
		argvlen[0] = 6;
		for (size_t i = 0; i < n; i++)
		{
			argv[i + 1] = keys->element[i]->str;
			argvlen[i + 1] = keys->element[i]->len;
		}
		redis_append(link, (int) n + 1, argv, argvlen);
		ok = redis_flush(link, err, errlen);
	}
	else
		strlcpy(err, "out of memory", errlen);
	free(argv);
	free(argvlen);
	return ok;
}

/* see relay.h */
bool
redis_delete_matching(RedisLink *link, const char *pattern, char *err, size_t errlen)
{
	char		cursor[32] = "0";

	err[0] = '\0';
	do
	{
		const char *argv[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
		TimestampTz deadline;
		redisReply *reply;
		bool		ok;

		if (!append_command(link, lengthof(argv), argv, NULL))
		{
			strlcpy(err, "out of memory", errlen);
			return false;
		}
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), link->timeout_ms);
		if (!write_all(link, deadline, err, errlen) ||
			(reply = next_reply(link, deadline, err, errlen)) == NULL)
			return false;
		ok = (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
			  reply->element[0]->type == REDIS_REPLY_STRING &&
			  reply->element[1]->type == REDIS_REPLY_ARRAY);
		if (!ok)
			snprintf(err, errlen, "SCAN failed: %s",
					 reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
		else
		{
			strlcpy(cursor, reply->element[0]->str, sizeof(cursor));
			if (reply->element[1]->elements > 0)
				ok = unlink_keys(link, reply->element[1], err, errlen);
		}
		freeReplyObject(reply);
		if (!ok)
			return false;
	} while (strcmp(cursor, "0") != 0);
	return true;
}
