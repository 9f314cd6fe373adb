/*
 * shmem.h
 *		The extension's shared memory: present only when the library is in
 *		shared_preload_libraries.
 */
#ifndef COUPON_SHMEM_H
#define COUPON_SHMEM_H

#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "payment.h"
#include "throttle.h"

#define THROTTLE_SLOTS		8192
#define RATE_SLOTS			8192
#define THROTTLE_PROBE		8

/* failed code attempts of one user (by hash) in the current window */
typedef struct ThrottleSlot
{
	uint64		key;
	TimestampTz window_start;
	int32		failures;
} ThrottleSlot;

/* most saga workers coupon.workers may ask for */
#define SAGA_MAX_WORKERS	16

typedef enum SagaWorkerState
{
	WORKER_STOPPED = 0,
	WORKER_STARTING,
	WORKER_IDLE,
	WORKER_WORKING,
	WORKER_STANDBY,
	WORKER_NO_EXTENSION,
	WORKER_NO_GATEWAY
} SagaWorkerState;

/* what one saga worker shows in worker_status; written by that worker */
typedef struct SagaWorkerSlot
{
	pid_t		pid;
	Latch	   *latch;
	SagaWorkerState state;
	TimestampTz last_loop_at;
	int32		in_flight;
	uint64		done;
	uint64		errors;
} SagaWorkerSlot;

/* a client's token bucket (ratelimit.c) */
typedef struct RateSlot
{
	uint64		key;			/* hash of merchant and client; 0 = free */
	double		tokens;			/* requests it may make now */
	TimestampTz at;				/* when tokens was last brought up to date */
} RateSlot;

/* what the relay worker is doing (relay_status.state) */
typedef enum RelayWorkerState
{
	RELAY_STOPPED = 0,
	RELAY_STARTING,
	RELAY_IDLE,
	RELAY_PUBLISHING,
	RELAY_REDIS_DOWN,
	RELAY_NO_EXTENSION
} RelayWorkerState;

#define RELAY_ERROR_LEN 256

/* the relay worker's live state; written by that worker, under mutex */
typedef struct RelayShared
{
	slock_t		mutex;
	pid_t		pid;
	Latch	   *latch;
	Oid			database;		/* the database it serves; InvalidOid until connected */
	RelayWorkerState state;
	bool		redis_mode;		/* coupon.redis_url set: Redis, else NOTIFY */
	bool		connected;
	bool		resting;		/* waiting out a back-off: no wake-ups wanted */
	uint64		reconnects;
	TimestampTz last_round_at;
	char		last_error[RELAY_ERROR_LEN];	/* "" = none */
} RelayShared;

/*
 * The block of outbox event ids being handed out (outbox.c): ids next up
 * to end (exclusive), taken from the sequence seq of database db (two
 * databases copied from one template have sequences of the same id).
 */
typedef struct EventIdBlock
{
	slock_t		mutex;
	Oid			db;
	Oid			seq;			/* InvalidOid: no block yet */
	int64		next;
	int64		end;
} EventIdBlock;

typedef struct CouponShared
{
	LWLock	   *throttle_lock;	/* also guards rate */
	ThrottleSlot throttle[THROTTLE_SLOTS];
	pg_atomic_uint64 throttle_blocked[THROTTLE_KINDS];	/* attempts refused, per kind */
	RateSlot	rate[RATE_SLOTS];

	/* the saga: worker slots and the gateway's circuit breaker */
	slock_t		saga_mutex;
	Breaker		breaker;
	SagaWorkerSlot workers[SAGA_MAX_WORKERS];

	RelayShared relay;
	EventIdBlock event_ids;
} CouponShared;

/* the shared state, or NULL when not preloaded */
extern CouponShared *coupon_shared(void);

#endif							/* COUPON_SHMEM_H */
