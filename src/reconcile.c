/*
 * reconcile.c
 *		coupon.gateway_transactions: the gateway's transaction list, fetched
 *		by the calling backend for reconcile().
 *
 * reconcile() calls this before it touches any row, so no lock anybody
 * waits on is held while the gateway answers (docs/settlement.md, "Reconciliation").
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "coupon.h"
#include "gateway.h"

PG_FUNCTION_INFO_V1(coupon_gateway_transactions);

/* an instant as the gateway's ISO 8601 query parameter (UTC), escaped */
static char *
iso_param(TimestampTz t)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			tz;

	if (timestamp2tm(t, &tz, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	return gateway_escape(psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
								   tm.tm_year, tm.tm_mon, tm.tm_mday,
								   tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec));
}

/* run one call to the end, interruptibly */
static void
call_and_wait(Gateway *gw, GatewayCall *call)
{
	gateway_start(gw, call);
	while (gateway_next_done(gw) == NULL)
	{
		CHECK_FOR_INTERRUPTS();
		if (gateway_wait(gw, 1000, PG_WAIT_EXTENSION))
			ResetLatch(MyLatch);
	}
}

/* coupon.gateway_transactions(start_at, end_at) */
Datum
coupon_gateway_transactions(PG_FUNCTION_ARGS)
{
	TimestampTz start_at = PG_GETARG_TIMESTAMPTZ(0);
	TimestampTz end_at = PG_GETARG_TIMESTAMPTZ(1);
	GatewayCall call;
	Gateway    *volatile gw;
	Datum		result;

	if (coupon_gateway_url[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("coupon.gateway_url is not set"),
				 errhint("Set coupon.gateway_url and coupon.gateway_secret in postgresql.conf.")));

	memset(&call, 0, sizeof(call));
	call.method = "GET";
	call.path = psprintf("/v1/transactions?startDate=%s&endDate=%s",
						 iso_param(start_at), iso_param(end_at));
	gw = gateway_open(coupon_gateway_url, coupon_gateway_secret, coupon_gateway_timeout_ms);
	PG_TRY();
	{
		call_and_wait(gw, &call);
	}
	PG_FINALLY();
	{
		gateway_close(gw);
	}
	PG_END_TRY();

	if (call.http_status == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("the payment gateway did not answer: %s",
						call.error ? call.error : "no answer"),
				 errhint("Check that the gateway at coupon.gateway_url is up, then run it again; nothing was written.")));
	if (call.http_status != 200 || call.response == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("the payment gateway answered HTTP %d to the transaction list",
						call.http_status),
				 errdetail("%s", call.response ? call.response : ""),
				 errhint("Check coupon.gateway_secret; nothing was written.")));
	result = DirectFunctionCall1(jsonb_in, CStringGetDatum(call.response));
	PG_RETURN_DATUM(result);
}
