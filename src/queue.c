/*
 * queue.c
 *		The outbox queue's ring in shared memory (docs/events.md, "The
 *		queue").
 *
 * A checkout's events are written, at its commit, to coupon.outbox_queue:
 * a table without an index, so an event costs the checkout a heap row and
 * nothing more.  The relay worker moves them into the outbox (where the
 * primary key and the audit lookup are) before it publishes them.  It
 * finds them through this ring, which holds the transaction id and the
 * place (ctid) of every row waiting in the queue, so that it never scans
 * the queue.
 *
 * A row goes to the queue only while the relay of this database takes
 * entries and the ring has room; otherwise it goes to the outbox as
 * before, so nothing waits in the queue without an entry, except after a
 * crash, when the relay scans the queue once as it starts.  An entry is
 * reserved before its row is written and filled in after, both under the
 * lock; an abort in between gives it up.  The relay marks entries moved
 * only once the transaction that moved their rows has committed; the ring
 * is freed from its tail as its entries are.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/memutils.h"

#include "coupon.h"
#include "queue.h"

typedef enum QueueEntryState
{
	QE_FREE = 0,
	QE_RESERVED,				/* its row is being written */
	QE_FILLED,					/* written; the relay moves it once visible */
	QE_DONE						/* moved, or its transaction aborted */
} QueueEntryState;

typedef struct QueueEntry
{
	FullTransactionId xid;
	ItemPointerData tid;
	uint8		state;
} QueueEntry;

typedef struct QueueRing
{
	LWLock	   *lock;
	Oid			database;		/* whose rows it holds */
	bool		taking;			/* a relay of that database takes entries */
	uint64		head;			/* next place to reserve */
	uint64		tail;			/* oldest place not free */
	uint64		queued;			/* rows that went through the queue */
	uint64		overflowed;		/* rows a full ring sent to the outbox */
	QueueEntry	entries[FLEXIBLE_ARRAY_MEMBER];
} QueueRing;

PG_FUNCTION_INFO_V1(coupon_outbox_queue_counts);

int			coupon_outbox_queue_size = 65536;

static QueueRing *ring = NULL;

/* this backend's reservation, until its transaction ends */
static uint64 my_first = 0;
static int	my_count = 0;

/* the relay's copy of the waiting rows */
static QueuedRow *rows_copy = NULL;

/* bytes of shared memory the ring takes */
Size
queue_shmem_size(void)
{
	if (coupon_outbox_queue_size == 0)
		return 0;
	return add_size(offsetof(QueueRing, entries),
					mul_size(sizeof(QueueEntry), coupon_outbox_queue_size));
}

/* create or attach the ring (shmem.c, under AddinShmemInitLock) */
void
queue_shmem_startup(void)
{
	bool		found;

	if (coupon_outbox_queue_size == 0)
		return;
	ring = ShmemInitStruct("coupon outbox queue", queue_shmem_size(), &found);
	if (!found)
	{
		memset(ring, 0, queue_shmem_size());
		ring->lock = &(GetNamedLWLockTranche("coupon queue"))->lock;
	}
}

/* the entry of a place in the ring */
static inline QueueEntry *
entry(uint64 pos)
{
	return &ring->entries[pos % coupon_outbox_queue_size];
}

/* free the entries at the tail that are done with; the lock is held */
static void
advance_tail(void)
{
	while (ring->tail < ring->head && entry(ring->tail)->state == QE_DONE)
		entry(ring->tail++)->state = QE_FREE;
}

/* room for n rows of xid, or false: they go to the outbox instead */
bool
queue_reserve(FullTransactionId xid, int n)
{
	bool		ok;

	Assert(my_count == 0);
	if (ring == NULL)
		return false;
	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	ok = ring->taking && ring->database == MyDatabaseId;
	if (ok && ring->head - ring->tail + n > (uint64) coupon_outbox_queue_size)
	{
		ring->overflowed += n;
		ok = false;
	}
	if (ok)
	{
		my_first = ring->head;
		my_count = n;
		for (int i = 0; i < n; i++)
		{
			QueueEntry *e = entry(ring->head++);

			e->xid = xid;
			ItemPointerSetInvalid(&e->tid);
			e->state = QE_RESERVED;
		}
	}
	LWLockRelease(ring->lock);
	return ok;
}

/*
 * The places of the reserved rows, now written.  An entry the relay gave
 * up meanwhile (it started over for another database) is left alone.
 */
void
queue_fill(const ItemPointerData *tids, int n)
{
	Assert(n == my_count);
	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
	{
		uint64		pos = my_first + i;

		if (pos >= ring->tail && entry(pos)->state == QE_RESERVED)
		{
			entry(pos)->tid = tids[i];
			entry(pos)->state = QE_FILLED;
		}
	}
	ring->queued += n;
	LWLockRelease(ring->lock);
}

/*
 * The transaction ended: after an abort its rows never count, and its
 * entries are done with at once rather than when the relay sees the
 * transaction gone.
 */
void
queue_release(bool committed)
{
	if (my_count == 0)
		return;
	if (!committed)
	{
		LWLockAcquire(ring->lock, LW_EXCLUSIVE);
		for (uint64 pos = Max(my_first, ring->tail); pos < my_first + my_count; pos++)
			if (entry(pos)->state == QE_RESERVED || entry(pos)->state == QE_FILLED)
				entry(pos)->state = QE_DONE;
		advance_tail();
		LWLockRelease(ring->lock);
	}
	my_count = 0;
}

/*
 * The relay of this database begins to take entries.  Those of another
 * database (coupon.database changed) are dropped: their relay is gone.
 */
void
queue_start(Oid database)
{
	if (ring == NULL)
		return;
	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	if (ring->database != database)
	{
		/* a writer of the other database fills nothing below the tail */
		ring->tail = ring->head;
		ring->database = database;
	}
	ring->taking = true;
	LWLockRelease(ring->lock);
}

/* the relay stops: rows go to the outbox until it starts again */
void
queue_stop(void)
{
	if (ring == NULL)
		return;
	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	ring->taking = false;
	LWLockRelease(ring->lock);
}

/*
 * The rows waiting in the queue that are written (a reserved one belongs
 * to a transaction still committing), oldest first, in memory of the
 * relay's that the next call reuses.
 */
int
queue_rows(QueuedRow **rows)
{
	int			n = 0;

	if (ring == NULL)
		return 0;
	if (rows_copy == NULL)
		rows_copy = MemoryContextAlloc(TopMemoryContext, sizeof(QueuedRow) * coupon_outbox_queue_size);
	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	advance_tail();
	for (uint64 pos = ring->tail; pos < ring->head; pos++)
	{
		QueueEntry *e = entry(pos);

		if (e->state != QE_FILLED)
			continue;
		rows_copy[n].pos = pos;
		rows_copy[n].xid = e->xid;
		rows_copy[n].tid = e->tid;
		n++;
	}
	LWLockRelease(ring->lock);
	*rows = rows_copy;
	return n;
}

/* rows the relay moved (or found gone), in a transaction that has committed */
void
queue_moved(const uint64 *pos, int n)
{
	if (ring == NULL || n == 0)
		return;
	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
		if (pos[i] >= ring->tail && pos[i] < ring->head && entry(pos[i])->state == QE_FILLED)
			entry(pos[i])->state = QE_DONE;
	advance_tail();
	LWLockRelease(ring->lock);
}

/* coupon.outbox_queue_counts(): the ring's counters, zero without one */
Datum
coupon_outbox_queue_counts(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2] = {0};
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "coupon.outbox_queue_counts must return a row");
	values[0] = values[1] = Int64GetDatum(0);
	if (ring != NULL)
	{
		LWLockAcquire(ring->lock, LW_SHARED);
		values[0] = Int64GetDatum((int64) ring->queued);
		values[1] = Int64GetDatum((int64) ring->overflowed);
		LWLockRelease(ring->lock);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
