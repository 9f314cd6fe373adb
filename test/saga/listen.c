/*
 * listen.c
 *		A LISTEN client for the NOTIFY fallback test (test/saga/events_notify.sh):
 *		prints "ready" once listening, then each notification's payload on a
 *		line of its own, and exits after the payload "done".
 *
 *		listen CONNINFO CHANNEL TIMEOUT_SECONDS
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

#include <libpq-fe.h>

/* one command that must succeed */
static void
run(PGconn *conn, const char *sql)
{
	PGresult   *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		fprintf(stderr, "%s: %s", sql, PQerrorMessage(conn));
		exit(2);
	}
	PQclear(res);
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	char		sql[200];
	time_t		deadline;

	if (argc != 4)
	{
		fprintf(stderr, "usage: listen CONNINFO CHANNEL TIMEOUT_SECONDS\n");
		return 2;
	}
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "connect: %s", PQerrorMessage(conn));
		return 2;
	}
	snprintf(sql, sizeof(sql), "LISTEN %s", argv[2]);
	run(conn, sql);
	printf("ready\n");
	fflush(stdout);
	deadline = time(NULL) + atoi(argv[3]);
	while (time(NULL) < deadline)
	{
		PGnotify   *n;
		fd_set		fds;
		struct timeval tv = {1, 0};
		int			sock = PQsocket(conn);

		FD_ZERO(&fds);
		FD_SET(sock, &fds);
		if (select(sock + 1, &fds, NULL, NULL, &tv) < 0 || !PQconsumeInput(conn))
		{
			fprintf(stderr, "wait: %s", PQerrorMessage(conn));
			return 2;
		}
		while ((n = PQnotifies(conn)) != NULL)
		{
			int			done = strcmp(n->extra, "done") == 0;

			printf("%s\n", n->extra);
			PQfreemem(n);
			if (done)
			{
				PQfinish(conn);
				return 0;
			}
		}
		fflush(stdout);
	}
	fprintf(stderr, "no \"done\" within %s s\n", argv[3]);
	return 1;
}
