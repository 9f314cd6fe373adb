/*
 * relay.c
 *		The relay worker's Redis client, on hiredis (docs/events.md).
 *
 * The worker publishes a batch of events as one pipeline: every command is
 * queued, then written in one go and every reply read.  Nothing here
 * raises a PostgreSQL error or allocates in a memory context: hiredis
 * allocates with malloc, so each function frees what it made before it
 * returns, and failures come back as false and a message.  The caller
 * then closes the link and reconnects later.
 */
#include "postgres.h"

#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "relay.h"

#define REDIS_DEFAULT_PORT 6379
#define URL_PART_LEN 256

struct RedisLink
{
	redisContext *ctx;
	int			queued;			/* commands appended, replies not yet read */
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
	link = malloc(sizeof(RedisLink));
	if (link == NULL)
	{
		strlcpy(err, "out of memory", errlen);
		redisFree(ctx);
		return NULL;
	}
	link->ctx = ctx;
	link->queued = 0;
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

/* see relay.h */
void
redis_append(RedisLink *link, int argc, const char **argv, const size_t *argvlen)
{
	/* only fails out of memory; the flush then reports the context's error */
	if (redisAppendCommandArgv(link->ctx, argc, argv, argvlen) == REDIS_OK)
		link->queued++;
}

/* see relay.h */
bool
redis_flush(RedisLink *link, char *err, size_t errlen)
{
	bool		ok = true;

	err[0] = '\0';
	while (link->queued > 0)
	{
		redisReply *reply = NULL;

		if (redisGetReply(link->ctx, (void **) &reply) != REDIS_OK || reply == NULL)
		{
			snprintf(err, errlen, "Redis connection lost: %s",
					 link->ctx->errstr[0] ? link->ctx->errstr : "no reply");
			link->queued = 0;
			return false;
		}
		link->queued--;
		if (reply->type == REDIS_REPLY_ERROR && ok)
		{
			snprintf(err, errlen, "Redis answered an error: %s", reply->str);
			ok = false;
		}
		freeReplyObject(reply);
	}
	if (ok && link->ctx->err)
	{
		snprintf(err, errlen, "Redis connection lost: %s", link->ctx->errstr);
		ok = false;
	}
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
		redisReply *reply = redisCommandArgv(link->ctx, 6, argv, NULL);
		bool		ok;

		ok = (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
			  reply->element[0]->type == REDIS_REPLY_STRING &&
			  reply->element[1]->type == REDIS_REPLY_ARRAY);
		if (ok && reply->element[1]->elements > 0)
		{
			redisReply *keys = reply->element[1];
			size_t		n = keys->elements;
			const char **kargv = malloc(sizeof(char *) * (n + 1));
			size_t	   *klen = malloc(sizeof(size_t) * (n + 1));

			if (kargv == NULL || klen == NULL)
				ok = false;
			else
			{
				kargv[0] = "UNLINK";
				klen[0] = 6;
				for (size_t i = 0; i < n; i++)
				{
					kargv[i + 1] = keys->element[i]->str;
					klen[i + 1] = keys->element[i]->len;
				}
				redis_append(link, (int) n + 1, kargv, klen);
				ok = redis_flush(link, err, errlen);
			}
			free(kargv);
			free(klen);
		}
		if (ok)
			strlcpy(cursor, reply->element[0]->str, sizeof(cursor));
		else if (err[0] == '\0' || reply == NULL || reply->type != REDIS_REPLY_ARRAY)
			snprintf(err, errlen, "SCAN failed: %s",
					 reply && reply->type == REDIS_REPLY_ERROR ? reply->str :
					 (link->ctx->errstr[0] ? link->ctx->errstr : "unexpected reply"));
		if (reply)
			freeReplyObject(reply);
		if (!ok)
			return false;
	} while (strcmp(cursor, "0") != 0);
	return true;
}
