/*
 * worker.c
 *		What the extension's background workers (the saga's, the relay)
 *		share: registration, their transactions, the extension check.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "utils/memutils.h"

#include "callctx.h"
#include "worker.h"

/*
 * Register one worker of this library: connected to a database, started
 * once recovery has finished (a standby runs none until promoted),
 * restarted 2 s after it exits with an error.
 */
void
worker_register(const char *function, const char *name, const char *type, int32 arg)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 2;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "coupon");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", type);
	worker.bgw_main_arg = Int32GetDatum(arg);
	RegisterBackgroundWorker(&worker);
}

/* a background worker's step: a transaction with a VOLATILE call context */
void
worker_step_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	call_begin(CALL_VOLATILE);
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* commit the step and go back to the worker's loop context */
void
worker_step_end(MemoryContext loop_cxt)
{
	call_end(CALL_VOLATILE);
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(loop_cxt);
}

/* is the extension installed in the worker's database?  (its own transaction) */
bool
worker_extension_present(void)
{
	bool		present;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	present = OidIsValid(get_extension_oid("coupon", true));
	CommitTransactionCommand();
	return present;
}
