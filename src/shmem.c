/*
 * shmem.c
 *		The extension's shared memory, requested and attached through the
 *		PostgreSQL 15 hooks when the library is preloaded.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"

#include "coupon.h"
#include "queue.h"
#include "shmem.h"

static CouponShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* ask the postmaster for our segment and lock tranche */
static void
coupon_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(add_size(MAXALIGN(sizeof(CouponShared)), queue_shmem_size()));
	RequestNamedLWLockTranche("coupon", 1);
	RequestNamedLWLockTranche("coupon queue", 1);
}

/* create or attach the segment */
static void
coupon_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("coupon", sizeof(CouponShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(CouponShared));
		shared->throttle_lock = &(GetNamedLWLockTranche("coupon"))->lock;
		SpinLockInit(&shared->saga_mutex);
		SpinLockInit(&shared->relay.mutex);
		SpinLockInit(&shared->event_ids.mutex);
		for (int k = 0; k < THROTTLE_KINDS; k++)
			pg_atomic_init_u64(&shared->throttle_blocked[k], 0);
	}
	queue_shmem_startup();
	LWLockRelease(AddinShmemInitLock);
}

/* install the hooks; only meaningful while preloading */
void
coupon_shmem_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = coupon_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = coupon_shmem_startup;
}

/* the shared state, or NULL when not preloaded */
CouponShared *
coupon_shared(void)
{
	return shared;
}
