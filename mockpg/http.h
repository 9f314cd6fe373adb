/*-------------------------------------------------------------------------
 *
 * http.h
 *	  The libmicrohttpd glue: the daemon (epoll, internal thread pool),
 *	  request bodies with a 64 KiB cap, suspend/resume for latency, journal
 *	  durability and stalls, and clean shutdown.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MOCKPG_HTTP_H
#define MOCKPG_HTTP_H

#include <stdbool.h>
#include <stdint.h>

/* Largest request body accepted; anything bigger gets 413. */
#define HTTP_MAX_BODY	65536

typedef struct HttpOptions
{
	const char *bind_address;	/* numeric IPv4 or IPv6 address */
	int			port;			/* 0: let the kernel choose */
	int			threads;		/* size of the server's thread pool */
	int			max_connections;
	int			idle_timeout_s; /* drop connections idle this long */
	bool		verbose;		/* pass libmicrohttpd's messages to stderr */
} HttpOptions;

extern bool http_start(const HttpOptions *options, int *bound_port);
extern void http_stop(void);

#endif							/* MOCKPG_HTTP_H */
