/*-------------------------------------------------------------------------
 *
 * journal.c
 *	  Append-only JSON-lines journal with group commit.
 *
 *	  Format: one JSON object per line.  The first line is a header
 *	  {"op":"header","format":"coupon-mockpg-journal","version":1}; then
 *	  "approve", "cancel" and "idem" records written by store.c, in the order
 *	  the store applied them.  After the last record the file is padded with
 *	  zero bytes: it is preallocated JOURNAL_EXTEND bytes at a time, like
 *	  PostgreSQL's WAL segments, so that the fdatasync of each batch flushes
 *	  only data and not a new file size (here 0.15 ms instead of 0.29 ms).
 *
 *	  At start the file is replayed up to the first line that is not whole:
 *	  one that starts with or contains a zero byte, or has no newline.  From
 *	  there on everything is either padding or the remains of the last batch,
 *	  torn by a crash before its fsync returned (so none of its answers was
 *	  sent); such bytes are zeroed, with a warning.  A whole line that does
 *	  not parse or does not fit the state stops the server, since guessing
 *	  would be dishonest.
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
#define JOURNAL_EXTEND	(8 * 1024 * 1024)	/* preallocation step */
#define ZERO_CHUNK		(1024 * 1024)

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
	off_t		offset;			/* end of the records: the next write goes here */
	off_t		filled;			/* file size; [offset, filled) is zeros on disk */
	char	   *zeros;			/* ZERO_CHUNK zero bytes, for preallocation */
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

/* pwrite() until everything is out; a failed write is fatal. */
static void
write_all(int fd, const char *data, size_t len, off_t at)
{
	while (len > 0)
	{
		ssize_t		n = pwrite(fd, data, len, at);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			fatal("cannot write journal \"%s\": %s", J.path, strerror(errno));
		}
		data += n;
		len -= (size_t) n;
		at += n;
	}
}

/* Overwrite [from, to) with zero bytes (preallocation, or a torn tail). */
static void
write_zeros(int fd, off_t from, off_t to)
{
	if (J.zeros == NULL)
		J.zeros = xcalloc(1, ZERO_CHUNK);
	while (from < to)
	{
		size_t		n = (to - from) > ZERO_CHUNK ? ZERO_CHUNK : (size_t) (to - from);

		write_all(fd, J.zeros, n, from);
		from += (off_t) n;
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

/* The journal's first line. */
static int
header_line(char *buf, size_t size)
{
	return snprintf(buf, size, "{\"op\":\"header\",\"format\":\"%s\",\"version\":%d}\n",
					JOURNAL_FORMAT, JOURNAL_VERSION);
}

/*
 * Read the journal back into the store.  Returns the end of the intact
 * records; *dirty_end is past the last non-zero byte after them (equal to
 * the return value when the rest is clean padding).
 */
static off_t
replay(FILE *f, JournalApplyFn apply, off_t *dirty_end)
{
	char	   *line = NULL;
	size_t		linecap = 0;
	ssize_t		n;
	off_t		good = 0;
	off_t		pos = 0;
	long		lineno = 0;

	*dirty_end = 0;
	while ((n = getline(&line, &linecap, f)) > 0)
	{
		json_t	   *rec;
		json_error_t jerr;
		char		err[256];

		lineno++;
		if (line[n - 1] != '\n' || memchr(line, '\0', (size_t) n) != NULL)
		{
			/* end of the records: padding, or a batch torn by a crash */
			char		buf[65536];
			size_t		k;

			pos = good;
			*dirty_end = good;
			for (ssize_t i = 0; i < n; i++)
			{
				if (line[i] != '\0')
					*dirty_end = good + i + 1;
			}
			pos += n;
			if (lineno == 1 && *dirty_end > 0)
			{
				/* only our own torn header may be discarded, not a foreign file */
				char		header[128];
				int			hlen = header_line(header, sizeof(header));

				if (*dirty_end > hlen || memcmp(line, header, (size_t) *dirty_end) != 0)
					fatal("\"%s\" is not a coupon-mockpg journal (bad first line)", J.path);
			}
			while ((k = fread(buf, 1, sizeof(buf), f)) > 0)
			{
				for (size_t i = 0; i < k; i++)
				{
					if (buf[i] != '\0')
						*dirty_end = pos + (off_t) i + 1;
				}
				pos += (off_t) k;
			}
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
	if (*dirty_end < good)
		*dirty_end = good;
	return good;
}

/*
 * Make sure [J.offset, J.offset + len) lies in the preallocated, zeroed
 * part of the file, growing it by whole JOURNAL_EXTEND steps.
 */
static void
ensure_room(size_t len)
{
	off_t		need = J.offset + (off_t) len;
	off_t		target;

	if (need <= J.filled)
		return;
	target = ((need + JOURNAL_EXTEND - 1) / JOURNAL_EXTEND) * JOURNAL_EXTEND;
	write_zeros(J.fd, J.filled, target);
	sync_or_die(J.fd);
	J.filled = target;
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

		ensure_room(out.len);
		write_all(J.fd, out.data, out.len, J.offset);
		sync_or_die(J.fd);
		J.offset += (off_t) out.len;
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
	off_t		dirty_end = 0;
	bool		created;
	struct stat st;
	int			rc;

	J.path = xstrdup(path);
	f = fopen(path, "r");
	if (f == NULL && errno != ENOENT)
		fatal("cannot open journal \"%s\": %s", path, strerror(errno));
	if (f != NULL)
	{
		good = replay(f, apply, &dirty_end);
		fclose(f);
	}
	created = (f == NULL);

	J.fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (J.fd < 0)
		fatal("cannot open journal \"%s\" for writing: %s", path, strerror(errno));
	if (fstat(J.fd, &st) != 0)
		fatal("cannot stat journal \"%s\": %s", path, strerror(errno));
	J.filled = st.st_size;
	if (dirty_end > good)
	{
		fprintf(stderr, "coupon-mockpg: journal \"%s\": discarding a torn write of %lld bytes at offset %lld (a crash before its fsync; none of its answers was sent)\n",
				path, (long long) (dirty_end - good), (long long) good);
		write_zeros(J.fd, good, dirty_end);
		sync_or_die(J.fd);
	}
	J.offset = good;
	if (good == 0)
	{
		char		header[128];
		int			len = header_line(header, sizeof(header));

		ensure_room((size_t) len);
		write_all(J.fd, header, (size_t) len, 0);
		sync_or_die(J.fd);
		J.offset = len;
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
	free(J.zeros);
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
