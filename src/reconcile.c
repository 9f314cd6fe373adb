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
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "coupon.h"
#include "pgcompat.h"
#include "gateway.h"
#include "gateway_reply.h"

PG_FUNCTION_INFO_V1(coupon_gateway_transactions);
PG_FUNCTION_INFO_V1(coupon_gateway_transaction_rows);

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

/* one page's path: the day's range, the page size, and where it starts */
static char *
page_path(const char *start, const char *end, const char *after)
{
	return psprintf("/v1/transactions?startDate=%s&endDate=%s&limit=%d%s%s", start, end,
					coupon_reconcile_page_size, after ? "&startingAfter=" : "",
					after ? gateway_escape(after) : "");
}

/* raise 58000 for an answer that is not a page of transactions */
static void
unreadable(const char *what, const char *answer)
{
	ereport(ERROR,
			(errcode(ERRCODE_SYSTEM_ERROR),
			 errmsg("the payment gateway's transaction list could not be read: %s", what),
			 errdetail("The answer began: %s", gateway_text(answer)),
			 errhint("Check coupon.gateway_url; nothing was written.")));
}

/* GET one page and return its body; any answer but 200 with a body raises */
static char *
fetch_page(Gateway *gw, char *path)
{
	GatewayCall call;

	memset(&call, 0, sizeof(call));
	call.method = "GET";
	call.path = path;
	call_and_wait(gw, &call);
	if (call.too_large)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("the payment gateway's transaction list could not be read: a page passed 1 MiB"),
				 errhint("Lower coupon.reconcile_page_size; nothing was written.")));
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
				 errdetail("%s", call.response ? gateway_text(call.response) : ""),
				 errhint("Check coupon.gateway_secret; nothing was written.")));
	return call.response;
}

/* the string member `key` of a transaction, or NULL when absent or not a string */
static char *
member_text(JsonbContainer *tx, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(tx, key, strlen(key), NULL);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* the member `amount` of a transaction, or -1 unless a whole number in bigint */
static int64
member_amount(JsonbContainer *tx)
{
	JsonbValue *v = getKeyJsonValueFromContainer(tx, "amount", strlen("amount"), NULL);
	char	   *digits;
	char	   *endp;
	int64		amount;

	if (v == NULL || v->type != jbvNumeric)
		return -1;
	digits = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	if (strspn(digits, "0123456789") != strlen(digits) || digits[0] == '\0')
		return -1;
	errno = 0;
	amount = strtoi64(digits, &endp, 10);
	return errno == 0 && *endp == '\0' ? amount : -1;
}

/*
 * Read one page into the result: check that it is a JSON array of
 * transactions, store one row per transaction, and return how many it held
 * and, through *last, the transactionKey of its last one (palloc'd in
 * `keep`, which outlives the page).
 */
static int
read_page(const char *answer, ReturnSetInfo *rsinfo, MemoryContext keep, char **last)
{
	JsonLexContext *lex;
	JsonSemAction nullsem = {0};
	Jsonb	   *page;
	int			n;

	lex = coupon_json_lexer(answer, strlen(answer), false);
	if (pg_parse_json(lex, &nullsem) != JSON_SUCCESS)
		unreadable("it is not JSON", answer);
	page = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(answer)));
	if (!JB_ROOT_IS_ARRAY(page) || JB_ROOT_IS_SCALAR(page))
		unreadable("it is not an array", answer);
	n = JB_ROOT_COUNT(page);
	for (int i = 0; i < n; i++)
	{
		JsonbValue *tx = getIthJsonbValueFromContainer(&page->root, i);
		char	   *key;
		char	   *order_id;
		char	   *type;
		int64		amount;
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		if (tx->type != jbvBinary || !JsonContainerIsObject(tx->val.binary.data))
			unreadable("a transaction is not an object", answer);
		key = member_text(tx->val.binary.data, "transactionKey");
		order_id = member_text(tx->val.binary.data, "orderId");
		type = member_text(tx->val.binary.data, "type");
		amount = member_amount(tx->val.binary.data);
		if (key == NULL || order_id == NULL || type == NULL)
			unreadable("a transaction lacks its transactionKey, orderId or type", answer);
		if (amount < 0)
			unreadable("a transaction's amount is not a whole number from 0 to 2^63", answer);
		values[0] = CStringGetTextDatum(key);
		values[1] = CStringGetTextDatum(order_id);
		values[2] = CStringGetTextDatum(type);
		values[3] = Int64GetDatum(amount);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		if (i == n - 1)
			*last = MemoryContextStrdup(keep, key);
	}
	return n;
}

/*
 * coupon.gateway_transactions(start_at, end_at): the gateway's whole list as
 * rows, fetched page by page (coupon.reconcile_page_size transactions at a
 * time, each page after the last one's transactionKey), so that no answer
 * comes near the 1 MiB a gateway answer may take and no list, however long,
 * is held in memory at once (the rows go to a tuplestore, which spills to
 * disk past work_mem).  Raises 08006 when the gateway does not answer and
 * 58000 when its answer cannot be read.
 */
Datum
coupon_gateway_transaction_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz start_at = PG_GETARG_TIMESTAMPTZ(0);
	TimestampTz end_at = PG_GETARG_TIMESTAMPTZ(1);
	char	   *start = iso_param(start_at);
	char	   *end = iso_param(end_at);
	MemoryContext keep = CurrentMemoryContext;
	MemoryContext page_cxt;
	char	   *after = NULL;
	Gateway    *volatile gw;

	if (coupon_gateway_url[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("coupon.gateway_url is not set"),
				 errhint("Set coupon.gateway_url and coupon.gateway_secret in postgresql.conf.")));

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	page_cxt = AllocSetContextCreate(CurrentMemoryContext, "coupon gateway page",
									 ALLOCSET_DEFAULT_SIZES);
	gw = gateway_open(coupon_gateway_url, coupon_gateway_secret, coupon_gateway_timeout_ms);
	PG_TRY();
	{
		for (;;)
		{
			char	   *previous = after;
			char	   *answer;
			int			n;

			MemoryContextSwitchTo(page_cxt);
			answer = fetch_page(gw, page_path(start, end, after));
			n = read_page(answer, rsinfo, keep, &after);
			/* a gateway that ignores startingAfter would page forever */
			if (n > 0 && previous != NULL && strcmp(previous, after) == 0)
				unreadable("a page ended where the one before it did", answer);
			MemoryContextSwitchTo(keep);
			MemoryContextReset(page_cxt);
			if (n < coupon_reconcile_page_size)
				break;
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_FINALLY();
	{
		gateway_close(gw);
	}
	PG_END_TRY();
	MemoryContextDelete(page_cxt);
	return (Datum) 0;
}

/*
 * The entry point of gateway_transactions() before 0.8 (one jsonb list):
 * under this module a database not yet updated is told to update.
 */
Datum
coupon_gateway_transactions(PG_FUNCTION_ARGS)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("reconcile() of extension coupon before 0.8 cannot run under the 0.8 module"),
			 errhint("Run ALTER EXTENSION coupon UPDATE.")));
	PG_RETURN_NULL();
}
