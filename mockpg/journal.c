/*-------------------------------------------------------------------------
 *
 * journal.c
 *	  Append-only JSON-lines journal with group commit.
 *
 *	  Format: one JSON object per line.  The first line is a header
 *	  {"op":"header","format":"coupon-mockpg-journal","version":1}; then
 *	  "approve", "cancel" and "idem" records written by store.c, in the order
 *	  the store applied them.  At start the whole file is replayed; a last
 *	  line without its newline is the trace of a crash in the middle of a
 *	  write (its answer was never sent) and is cut off; any other bad line
 *	  stops the server, since guessing would be dishonest.
 *
 *	  Records are appended to an in-memory buffer while the store's lock is
 *	  held (so the file order is the store order) and get a sequence number.
 *	  The writer thread swaps the buffer out, write()s it, fdatasync()s, and
 *	  then publishes the highest sequence number on disk and resumes the
 *	  requests waiting for it.  Everything that arrived during one fsync is
 *	  written by the next: that is the group commit.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"
#include "util.h"

#define JOURNAL_FORMAT	"coupon-mockpg-journal"
#define JOURNAL_VERSION 1

typedef struct Waiter
{
	uint64_t	seq;
	WakeFn		wake;
	void	   *arg;
} Waiter;

typedef struct Buffer
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Buffer;

static struct
{
	bool		enabled;
	int			fd;
	char	   *path;
	pthread_mutex_t lock;
	pthread_cond_t work;		/* the writer has something to write, or stop */
	pthread_cond_t durable_cv;	/* durable_seq moved, or a wake-up finished */
	Buffer		pending;
	uint64_t	appended_seq;
	uint64_t	durable_seq;
	Waiter	   *waiters;
	size_t		nwaiters;
	size_t		capwaiters;
	int			waking;
	bool		closing;
	bool		stop;
	pthread_t	thread;
	uint64_t	records;
	uint64_t	batches;
	uint64_t	replayed;
} J;

/* Append bytes to a growing buffer. */
static void
buffer_add(Buffer *b, const char *data, size_t len)
{
	if (b->len + len > b->cap)
	{
		size_t		cap = b->cap ? b->cap : 65536;

		while (cap < b->len + len)
			cap *= 2;
		b->data = xrealloc(b->data, cap);
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
}

/* write() until everything is out; a short or failed write is fatal. */
static void
write_all(int fd, const char *data, size_t len)
{
	while (len > 0)
	{
		ssize_t		n = write(fd, data, len);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			fatal("cannot write journal \"%s\": %s", J.path, strerror(errno));
		}
		data += n;
		len -= (size_t) n;
	}
}

/*
 * A failed fsync means we no longer know what is on disk; like PostgreSQL we
 * stop rather than answer as if it were durable.
 */
static void
sync_or_die(int fd)
{
	if (fdatasync(fd) != 0)
		fatal("cannot fdatasync journal \"%s\": %s", J.path, strerror(errno));
}

/* Make a new journal's directory entry durable too. */
static void
sync_parent_dir(const char *path)
{
	char	   *copy = xstrdup(path);
	int			dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY);

	if (dfd >= 0)
	{
		(void) fsync(dfd);
		close(dfd);
	}
	free(copy);
}

/* Check the first line is our header, so a wrong --journal file is refused. */
static void
check_header(json_t *rec)
{
	const char *op = json_string_value(json_object_get(rec, "op"));
	const char *format = json_string_value(json_object_get(rec, "format"));
	json_t	   *version = json_object_get(rec, "version");

	if (!op || strcmp(op, "header") != 0 || !format ||
		strcmp(format, JOURNAL_FORMAT) != 0)
		fatal("\"%s\" is not a coupon-mockpg journal (bad first line)", J.path);
	if (!json_is_integer(version) || json_integer_value(version) != JOURNAL_VERSION)
		fatal("journal \"%s\" has an unsupported version", J.path);
}

/*
 * Read the journal back into the store.  Returns the length of the intact
 * part of the file; a torn last line is left out of it.
 */
static off_t
replay(FILE *f, JournalApplyFn apply)
{
	char	   *line = NULL;
	size_t		linecap = 0;
	ssize_t		n;
	off_t		good = 0;
	long		lineno = 0;

	while ((n = getline(&line, &linecap, f)) > 0)
	{
		json_t	   *rec;
		json_error_t jerr;
		char		err[256];

		lineno++;
		if (line[n - 1] != '\n')
		{
			fprintf(stderr, "coupon-mockpg: journal \"%s\": dropping torn last line %ld (%zd bytes)\n",
					J.path, lineno, n);
			break;
		}
		rec = json_loadb(line, (size_t) n - 1, JSON_REJECT_DUPLICATES, &jerr);
		if (rec == NULL || !json_is_object(rec))
			fatal("journal \"%s\" line %ld is not a JSON object: %s",
				  J.path, lineno, rec ? "wrong type" : jerr.text);
		if (lineno == 1)
			check_header(rec);
		else
		{
			err[0] = '\0';
			if (!apply(rec, err, sizeof(err)))
				fatal("journal \"%s\" line %ld: %s", J.path, lineno, err);
			J.replayed++;
		}
		json_decref(rec);
		good += n;
	}
	if (ferror(f))
		fatal("cannot read journal \"%s\": %s", J.path, strerror(errno));
	free(line);
	return good;
}

/* The writer thread: write and fsync each batch, then resume its requests. */
static void *
journal_main(void *unused)
{
	Buffer		out = {0};
	Waiter	   *ready = NULL;
	size_t		capready = 0;

	pthread_mutex_lock(&J.lock);
	for (;;)
	{
		uint64_t	target;
		size_t		nready = 0;
		size_t		keep = 0;
		Buffer		tmp;

		while (J.pending.len == 0 && !J.stop)
			pthread_cond_wait(&J.work, &J.lock);
		if (J.pending.len == 0)
			break;
		tmp = J.pending;
		J.pending = out;
		out = tmp;
		target = J.appended_seq;
		pthread_mutex_unlock(&J.lock);

		write_all(J.fd, out.data, out.len);
		sync_or_die(J.fd);
		out.len = 0;

		pthread_mutex_lock(&J.lock);
		J.durable_seq = target;
		J.batches++;
		if (capready < J.nwaiters)
		{
			capready = J.nwaiters;
			ready = xrealloc(ready, capready * sizeof(Waiter));
		}
		for (size_t i = 0; i < J.nwaiters; i++)
		{
			if (J.waiters[i].seq <= target)
				ready[nready++] = J.waiters[i];
			else
				J.waiters[keep++] = J.waiters[i];
		}
		J.nwaiters = keep;
		J.waking += (int) nready;
		pthread_cond_broadcast(&J.durable_cv);
		pthread_mutex_unlock(&J.lock);

		for (size_t i = 0; i < nready; i++)
			ready[i].wake(ready[i].arg, false);

		pthread_mutex_lock(&J.lock);
		J.waking -= (int) nready;
		if (nready > 0)
			pthread_cond_broadcast(&J.durable_cv);
	}
	pthread_mutex_unlock(&J.lock);
	free(out.data);
	free(ready);
	return NULL;
}

/*
 * Replay the journal at path (creating it if absent), cut off a torn tail,
 * open it for appending and start the writer.  Errors are fatal: a gateway
 * that silently forgot payments would make the saga's tests meaningless.
 */
void
journal_open(const char *path, JournalApplyFn apply)
{
	FILE	   *f;
	off_t		good = 0;
	bool		created = false;
	struct stat st;
	int			rc;

	J.path = xstrdup(path);
	f = fopen(path, "r");
	if (f == NULL && errno != ENOENT)
		fatal("cannot open journal \"%s\": %s", path, strerror(errno));
	if (f != NULL)
	{
		good = replay(f, apply);
		fclose(f);
	}

	J.fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (J.fd < 0)
		fatal("cannot open journal \"%s\" for writing: %s", path, strerror(errno));
	if (fstat(J.fd, &st) != 0)
		fatal("cannot stat journal \"%s\": %s", path, strerror(errno));
	if (st.st_size > good)
	{
		if (ftruncate(J.fd, good) != 0)
			fatal("cannot truncate journal \"%s\": %s", path, strerror(errno));
		sync_or_die(J.fd);
	}
	if (good == 0)
	{
		char		header[128];
		int			len;

		len = snprintf(header, sizeof(header),
					   "{\"op\":\"header\",\"format\":\"%s\",\"version\":%d}\n",
					   JOURNAL_FORMAT, JOURNAL_VERSION);
		write_all(J.fd, header, (size_t) len);
		sync_or_die(J.fd);
		created = true;
	}
	if (created)
		sync_parent_dir(path);

	pthread_mutex_init(&J.lock, NULL);
	pthread_cond_init(&J.work, NULL);
	pthread_cond_init(&J.durable_cv, NULL);
	J.enabled = true;
	rc = pthread_create(&J.thread, NULL, journal_main, NULL);
	if (rc != 0)
		fatal("cannot start the journal thread: error %d", rc);
}

/* Whether --journal was given. */
bool
journal_enabled(void)
{
	return J.enabled;
}

/*
 * Queue one record (a JSON object without newline) and return its sequence
 * number.  The caller holds the store's lock, so the file keeps store order.
 */
uint64_t
journal_append(const char *line, size_t len)
{
	uint64_t	seq;

	if (!J.enabled)
		return 0;
	pthread_mutex_lock(&J.lock);
	buffer_add(&J.pending, line, len);
	buffer_add(&J.pending, "\n", 1);
	seq = ++J.appended_seq;
	J.records++;
	pthread_cond_signal(&J.work);
	pthread_mutex_unlock(&J.lock);
	return seq;
}

/*
 * Sequence number of the newest record appended so far.  An answer that
 * shows the store's state must wait for it, since that state may include
 * records not yet on disk.
 */
uint64_t
journal_last_seq(void)
{
	uint64_t	seq;

	if (!J.enabled)
		return 0;
	pthread_mutex_lock(&J.lock);
	seq = J.appended_seq;
	pthread_mutex_unlock(&J.lock);
	return seq;
}

/*
 * Make a request wait until record seq is on disk.  Returns false when it
 * already is (the caller answers at once) and true when the request was
 * suspended (it is resumed after the fsync).  During shutdown the caller's
 * thread blocks for the fsync instead, since nobody would resume it.
 */
bool
journal_wait(uint64_t seq, SuspendFn suspend, WakeFn wake, void *arg)
{
	if (!J.enabled || seq == 0)
		return false;
	pthread_mutex_lock(&J.lock);
	if (J.durable_seq >= seq)
	{
		pthread_mutex_unlock(&J.lock);
		return false;
	}
	if (J.closing)
	{
		while (J.durable_seq < seq)
			pthread_cond_wait(&J.durable_cv, &J.lock);
		pthread_mutex_unlock(&J.lock);
		return false;
	}
	if (J.nwaiters == J.capwaiters)
	{
		J.capwaiters = J.capwaiters ? J.capwaiters * 2 : 256;
		J.waiters = xrealloc(J.waiters, J.capwaiters * sizeof(Waiter));
	}
	suspend(arg);
	J.waiters[J.nwaiters].seq = seq;
	J.waiters[J.nwaiters].wake = wake;
	J.waiters[J.nwaiters].arg = arg;
	J.nwaiters++;
	pthread_mutex_unlock(&J.lock);
	return true;
}

/*
 * Shutdown, step one: no more suspended waiters; wait until every request
 * already waiting has had its fsync and been resumed.
 */
void
journal_close_waiters(void)
{
	if (!J.enabled)
		return;
	pthread_mutex_lock(&J.lock);
	J.closing = true;
	while (J.nwaiters > 0 || J.waking > 0)
		pthread_cond_wait(&J.durable_cv, &J.lock);
	pthread_mutex_unlock(&J.lock);
}

/* Shutdown, step two: write what is left, stop the writer, close the file. */
void
journal_stop(void)
{
	if (!J.enabled)
		return;
	pthread_mutex_lock(&J.lock);
	J.stop = true;
	J.closing = true;
	pthread_cond_signal(&J.work);
	pthread_mutex_unlock(&J.lock);
	pthread_join(J.thread, NULL);
	close(J.fd);
	free(J.pending.data);
	free(J.waiters);
	free(J.path);
	pthread_cond_destroy(&J.work);
	pthread_cond_destroy(&J.durable_cv);
	pthread_mutex_destroy(&J.lock);
	J.enabled = false;
}

/* Figures for GET /__mock/stats. */
JournalCounts
journal_counts(void)
{
	JournalCounts c = {0};

	if (!J.enabled)
		return c;
	pthread_mutex_lock(&J.lock);
	c.enabled = true;
	c.records = J.records;
	c.batches = J.batches;
	c.replayed = J.replayed;
	c.durable_seq = J.durable_seq;
	pthread_mutex_unlock(&J.lock);
	return c;
}
