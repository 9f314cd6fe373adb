/*
 * saga_worker.c
 *		The saga's background workers: registered when the library is
 *		preloaded, connected to coupon.database, they claim due payments,
 *		call the gateway with many calls in flight, record the answers, and
 *		sweep lapsed reservations.  Also the worker_status view.
 *
 * The loop never holds a transaction across a gateway wait: claim (commit),
 * wait on the calls and the latch together, record (commit).
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "callctx.h"
#include "coupon.h"
#include "saga.h"
#include "shmem.h"
#include "spi_util.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(coupon_worker_status);
PGDLLEXPORT void coupon_saga_worker_main(Datum main_arg);

/* holds that lapsed without a payment: the worker sweeps them too */
static SavedPlan sweep_plan = {
	.sql = "SELECT coupon.expire_reservations(1000)",
	.nargs = 0
};

static int	my_slot = -1;
static MemoryContext loop_cxt = NULL;

/* publish this worker's state in its slot */
static void
set_state(SagaWorkerState state, int in_flight, const SagaRunner *runner)
{
	CouponShared *sh = coupon_shared();
	SagaWorkerSlot *slot = &sh->workers[my_slot];

	SpinLockAcquire(&sh->saga_mutex);
	slot->state = state;
	slot->last_loop_at = GetCurrentTimestamp();
	slot->in_flight = in_flight;
	if (runner)
	{
		slot->done = runner->done;
		slot->errors = runner->errors;
	}
	SpinLockRelease(&sh->saga_mutex);
}

/* leave the slot empty when the worker exits, however it exits */
static void
release_slot(int code, Datum arg)
{
	CouponShared *sh = coupon_shared();
	SagaWorkerSlot *slot = &sh->workers[my_slot];

	SpinLockAcquire(&sh->saga_mutex);
	slot->pid = 0;
	slot->latch = NULL;
	slot->state = WORKER_STOPPED;
	slot->in_flight = 0;
	SpinLockRelease(&sh->saga_mutex);
}

/* (re)open the gateway client when its settings changed */
static Gateway *
refresh_gateway(Gateway *gw, char **url, char **secret, int *timeout)
{
	if (gw != NULL && strcmp(*url, coupon_gateway_url) == 0 &&
		strcmp(*secret, coupon_gateway_secret) == 0 && *timeout == coupon_gateway_timeout_ms)
		return gw;
	if (gw != NULL && gateway_in_flight(gw) > 0)
		return gw;				/* finish the calls under the old settings first */
	if (gw != NULL)
	{
		gateway_close(gw);
		pfree(*url);
		pfree(*secret);
		gw = NULL;
	}
	if (coupon_gateway_url[0] == '\0')
		return NULL;
	*url = MemoryContextStrdup(TopMemoryContext, coupon_gateway_url);
	*secret = MemoryContextStrdup(TopMemoryContext, coupon_gateway_secret);
	*timeout = coupon_gateway_timeout_ms;
	return gateway_open(*url, *secret, *timeout);
}

/* the worker's entry point */
void
coupon_saga_worker_main(Datum main_arg)
{
	CouponShared *sh = coupon_shared();
	SagaRunner	runner;
	Gateway    *gw = NULL;
	char	   *gw_url = NULL;
	char	   *gw_secret = NULL;
	int			gw_timeout = 0;
	TimestampTz last_sweep = 0;
	bool		have_extension = false;

	my_slot = DatumGetInt32(main_arg);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	SpinLockAcquire(&sh->saga_mutex);
	sh->workers[my_slot].pid = MyProcPid;
	sh->workers[my_slot].latch = MyLatch;
	sh->workers[my_slot].state = WORKER_STARTING;
	sh->workers[my_slot].done = 0;
	sh->workers[my_slot].errors = 0;
	SpinLockRelease(&sh->saga_mutex);
	before_shmem_exit(release_slot, (Datum) 0);

	BackgroundWorkerInitializeConnection(coupon_database, NULL, 0);
	/* the worker's statements see built-in objects only, as the functions' do */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	pgstat_report_appname(psprintf("coupon saga worker %d", my_slot + 1));

	memset(&runner, 0, sizeof(runner));
	runner.actor = MemoryContextStrdup(TopMemoryContext, psprintf("worker %d", my_slot + 1));
	runner.call_cxt = AllocSetContextCreate(TopMemoryContext, "coupon saga calls",
											ALLOCSET_DEFAULT_SIZES);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "coupon saga loop",
									 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		long		timeout = coupon_naptime_ms;
		long		next_due = -1;
		int			room;
		int			claimed;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);

		/* checked until found; a DROP EXTENSION later makes the claim fail and the worker restart */
		if (!have_extension && !(have_extension = worker_extension_present()))
		{
			set_state(WORKER_NO_EXTENSION, 0, &runner);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 timeout, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}

		gw = refresh_gateway(gw, &gw_url, &gw_secret, &gw_timeout);
		runner.gw = gw;

		if (gw != NULL && gateway_in_flight(gw) == 0)
			MemoryContextReset(runner.call_cxt);	/* no call refers to it */

		/*
		 * One round, one commit: record answers first (they free room and
		 * move payments on), then claim what is due.  Without a gateway only
		 * local steps run (coupons a payment no longer needs to charge).
		 */
		worker_step_begin("recording answers and claiming due payments");
		if (gw != NULL && gateway_has_done(gw))
			saga_record(&runner);
		room = (gw == NULL) ? coupon_max_inflight : coupon_max_inflight - gateway_in_flight(gw);
		claimed = (room > 0) ? saga_claim(&runner, room, &next_due) : 0;
		worker_step_end(loop_cxt);
		saga_start_queued(&runner);

		if ((gw != NULL && gateway_has_done(gw)) || (room > 0 && claimed == room))
			timeout = 0;		/* more answers waiting, or more may be due */
		else if (room > 0 && next_due == 0)
			timeout = Min(timeout, 100);	/* due, but held by another runner */
		else if (room > 0 && next_due > 0)
			timeout = Min(timeout, next_due);

		if (GetCurrentTimestamp() >= TimestampTzPlusMilliseconds(last_sweep, coupon_naptime_ms))
		{
			worker_step_begin("expiring lapsed reservations");
			spi_run(&sweep_plan, NULL, NULL, false, 0);
			worker_step_end(loop_cxt);
			last_sweep = GetCurrentTimestamp();
		}

		if (gw == NULL)
		{
			set_state(WORKER_NO_GATEWAY, 0, &runner);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 timeout, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}

		set_state(gateway_in_flight(gw) > 0 ? WORKER_WORKING : WORKER_IDLE,
				  gateway_in_flight(gw), &runner);
		if (gateway_wait(gw, timeout, PG_WAIT_EXTENSION))
			ResetLatch(MyLatch);
	}
}

/*
 * Register coupon.workers workers; only while the library is being
 * preloaded, and not under pg_upgrade (whose server must run no user
 * code).  They start once recovery has finished: a standby runs none until
 * it is promoted, and worker_status shows it as 'standby'.
 */
void
coupon_saga_worker_init(void)
{
	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade)
		return;
	for (int i = 0; i < coupon_workers; i++)
		worker_register("coupon_saga_worker_main", psprintf("coupon saga worker %d", i + 1),
						"coupon saga worker", i);
}

/* coupon.worker_status_rows(): one row per configured worker slot */
Datum
coupon_worker_status(PG_FUNCTION_ARGS)
{
	static const char *const state_names[] = {
		[WORKER_STOPPED] = "stopped",
		[WORKER_STARTING] = "starting",
		[WORKER_IDLE] = "idle",
		[WORKER_WORKING] = "working",
		[WORKER_STANDBY] = "standby",
		[WORKER_NO_EXTENSION] = "no_extension",
		[WORKER_NO_GATEWAY] = "no_gateway",
	};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CouponShared *sh = coupon_shared();
	Breaker		breaker;

	InitMaterializedSRF(fcinfo, 0);
	if (sh == NULL)
		return (Datum) 0;		/* not preloaded: no workers */
	saga_breaker_state(&breaker);

	for (int i = 0; i < coupon_workers && i < SAGA_MAX_WORKERS; i++)
	{
		SagaWorkerSlot slot;
		Datum		values[10];
		bool		nulls[10] = {0};

		SpinLockAcquire(&sh->saga_mutex);
		slot = sh->workers[i];
		SpinLockRelease(&sh->saga_mutex);

		values[0] = Int32GetDatum(i + 1);
		values[1] = Int32GetDatum(slot.pid);
		nulls[1] = (slot.pid == 0);
		/* on a standby no worker runs until promotion */
		if (slot.pid == 0 && RecoveryInProgress())
			slot.state = WORKER_STANDBY;
		values[2] = CStringGetTextDatum(state_names[slot.state]);
		values[3] = TimestampTzGetDatum(slot.last_loop_at);
		nulls[3] = (slot.last_loop_at == 0);
		values[4] = Int32GetDatum(slot.in_flight);
		values[5] = Int64GetDatum((int64) slot.done);
		values[6] = Int64GetDatum((int64) slot.errors);
		values[7] = CStringGetTextDatum(breaker_state_name(breaker.state));
		values[8] = TimestampTzGetDatum(breaker.open_until);
		nulls[8] = (breaker.state != BREAKER_OPEN);
		values[9] = Int32GetDatum(breaker.failures);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
