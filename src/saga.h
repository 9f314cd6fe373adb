/*
 * saga.h
 *		Running the payment saga's steps: claim due payments, start their
 *		gateway calls, record the answers, and do the local steps.  The
 *		worker (saga_worker.c) and process_payments() share this code.
 */
#ifndef COUPON_SAGA_H
#define COUPON_SAGA_H

#include "gateway.h"
#include "payment.h"

/* who runs the steps, and what it keeps between transactions */
typedef struct SagaRunner
{
	Gateway    *gw;
	const char *actor;			/* "worker N" or "backend", for the event log */
	MemoryContext call_cxt;		/* SagaCalls live here until recorded */
	Breaker		local_breaker;	/* used when there is no shared memory */
	uint64		done;			/* steps finished */
	uint64		errors;			/* gateway calls without a usable answer */
	struct SagaCall *queued;	/* claimed, to be sent once the claim commits */
} SagaRunner;

/*
 * Claim up to max_rows due payments: local steps run at once, gateway
 * steps are marked in flight and queued for saga_start_queued.  Without a
 * gateway (runner->gw NULL) only local steps are claimed.  Returns the
 * number of payments claimed; *next_due_ms is how long until the next one
 * falls due (-1: none).  Inside a transaction and SPI.
 */
extern int	saga_claim(SagaRunner *runner, int max_rows, long *next_due_ms);

/* send the queued calls: after the claim's commit (the worker) */
extern void saga_start_queued(SagaRunner *runner);

/* record every finished call.  Inside a transaction and SPI. */
extern int	saga_record(SagaRunner *runner);

/* is the gateway circuit letting calls through right now? (for the worker's wait) */
extern BreakerState saga_breaker_state(Breaker *copy);

/* wake the saga workers when the current transaction commits */
extern void saga_wake_at_commit(void);

/* register the commit callback that does the waking */
extern void coupon_saga_init(void);

/* the saga workers: registration from _PG_init, and the entry point */
extern void coupon_saga_worker_init(void);

#endif							/* COUPON_SAGA_H */
