/*
 * queue.h
 *		The outbox queue's ring in shared memory: where the checkout's event
 *		rows wait in coupon.outbox_queue, for the relay worker to move them
 *		into the outbox (docs/events.md, "The queue").
 */
#ifndef COUPON_QUEUE_H
#define COUPON_QUEUE_H

#include "access/transam.h"
#include "storage/itemptr.h"

/* coupon.outbox_queue_size: entries of the ring; 0 leaves the queue unused */
extern int	coupon_outbox_queue_size;

/* the ring's share of the extension's shared memory */
extern Size queue_shmem_size(void);
extern void queue_shmem_startup(void);

/*
 * The writer's side, at pre-commit: room for n rows of transaction xid in
 * this database, or false (no relay takes them, or the ring is full: the
 * rows then go to the outbox itself); then the rows' places once written.
 * An abort after the reservation gives the entries up.
 */
extern bool queue_reserve(FullTransactionId xid, int n);
extern void queue_fill(const ItemPointerData *tids, int n);
extern void queue_release(bool committed);

/* one row waiting in the queue, as the relay worker reads the ring */
typedef struct QueuedRow
{
	uint64		pos;			/* place in the ring, to mark it moved */
	FullTransactionId xid;
	ItemPointerData tid;
} QueuedRow;

/*
 * The relay worker's side: take the rows of this database (entries made
 * from now on), list those written and not yet moved, mark some moved,
 * and stop taking any.
 */
extern void queue_start(Oid database);
extern int	queue_rows(QueuedRow **rows);
extern void queue_moved(const uint64 *pos, int n);
extern void queue_stop(void);

#endif							/* COUPON_QUEUE_H */
