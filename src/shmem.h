/*
 * shmem.h
 *		The extension's shared memory: present only when the library is in
 *		shared_preload_libraries.
 */
#ifndef COUPON_SHMEM_H
#define COUPON_SHMEM_H

#include "storage/lwlock.h"
#include "utils/timestamp.h"

#define THROTTLE_SLOTS		8192
#define THROTTLE_PROBE		8

/* failed code attempts of one user (by hash) in the current window */
typedef struct ThrottleSlot
{
	uint64		key;
	TimestampTz window_start;
	int32		failures;
} ThrottleSlot;

typedef struct CouponShared
{
	LWLock	   *throttle_lock;
	ThrottleSlot throttle[THROTTLE_SLOTS];
} CouponShared;

/* the shared state, or NULL when not preloaded */
extern CouponShared *coupon_shared(void);

#endif							/* COUPON_SHMEM_H */
