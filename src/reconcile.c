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
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
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

/*
 * Read one page: check that it is a JSON array of objects, append its
 * elements to `all` (a JSON array's text being built), and return how many
 * it held and, through *last, the transactionKey of its last one.
 */
static int
read_page(const char *answer, StringInfo all, char **last)
{
	JsonLexContext *lex;
	JsonSemAction nullsem = {0};
	Jsonb	   *page;
	JsonbValue *v;
	int			n;
	const char *open;
	const char *close;

	lex = makeJsonLexContextCstringLen((char *) answer, strlen(answer), PG_UTF8, false);
	if (pg_parse_json(lex, &nullsem) != JSON_SUCCESS)
		unreadable("it is not JSON", answer);
	page = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(answer)));
	if (!JB_ROOT_IS_ARRAY(page) || JB_ROOT_IS_SCALAR(page))
		unreadable("it is not an array", answer);
	n = JB_ROOT_COUNT(page);
	*last = NULL;
	if (n == 0)
		return 0;
	v = getIthJsonbValueFromContainer(&page->root, n - 1);
	if (v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data))
		v = getKeyJsonValueFromContainer(v->val.binary.data, "transactionKey",
										 strlen("transactionKey"), NULL);
	else
		v = NULL;
	if (v == NULL || v->type != jbvString)
		unreadable("a transaction has no transactionKey", answer);
	*last = pnstrdup(v->val.string.val, v->val.string.len);

	/* the elements' text: between the outer brackets, which parsing found */
	open = strchr(answer, '[');
	close = strrchr(answer, ']');
	if (all->len > 1)
		appendStringInfoChar(all, ',');
	appendBinaryStringInfo(all, open + 1, close - open - 1);
	return n;
}

/*
 * coupon.gateway_transactions(start_at, end_at): the gateway's whole list,
 * fetched page by page (coupon.reconcile_page_size transactions at a time,
 * each page after the last one's transactionKey), so that no answer comes
 * near the 1 MiB a gateway answer may take.  Raises 08006 when the gateway
 * does not answer and 58000 when its answer cannot be read.
 */
Datum
coupon_gateway_transactions(PG_FUNCTION_ARGS)
{
	TimestampTz start_at = PG_GETARG_TIMESTAMPTZ(0);
	TimestampTz end_at = PG_GETARG_TIMESTAMPTZ(1);
	char	   *start = iso_param(start_at);
	char	   *end = iso_param(end_at);
	StringInfoData all;
	char	   *after = NULL;
	Gateway    *volatile gw;

	if (coupon_gateway_url[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("coupon.gateway_url is not set"),
				 errhint("Set coupon.gateway_url and coupon.gateway_secret in postgresql.conf.")));

	initStringInfo(&all);
	appendStringInfoChar(&all, '[');
	gw = gateway_open(coupon_gateway_url, coupon_gateway_secret, coupon_gateway_timeout_ms);
	PG_TRY();
	{
		for (;;)
		{
			char	   *previous = after;
			char	   *answer = fetch_page(gw, page_path(start, end, after));

			if (read_page(answer, &all, &after) < coupon_reconcile_page_size)
				break;
			/* a gateway that ignores startingAfter would page forever */
			if (previous != NULL && strcmp(previous, after) == 0)
				unreadable("a page ended where the one before it did", answer);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_FINALLY();
	{
		gateway_close(gw);
	}
	PG_END_TRY();
	appendStringInfoChar(&all, ']');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(all.data)));
}
