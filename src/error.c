/*
 * error.c
 *		The error contract of docs/errors.md: SQLSTATE PTnnn where nnn is
 *		the HTTP status, one plain sentence, DETAIL as JSON with the reason.
 */
#include "postgres.h"

#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/tuplestore.h"

#include "coupon.h"
#include "pgcompat.h"
#include "error.h"

PG_FUNCTION_INFO_V1(coupon_reasons);
PG_FUNCTION_INFO_V1(coupon_raise_error);

/* the PTnnn SQLSTATE of a reason */
int
reason_sqlstate(CouponReason reason)
{
	int			http = reason_http_status(reason);

	return MAKE_SQLSTATE('P', 'T', '0' + (http / 100) % 10,
						 '0' + (http / 10) % 10, '0' + http % 10);
}

/* the DETAIL of a business error, escaped as PostgreSQL escapes JSON */
char *
reason_detail(CouponReason reason, const char *ids)
{
	StringInfoData detail;

	initStringInfo(&detail);
	appendStringInfoString(&detail, "{\"reason\": ");
	escape_json(&detail, reason_name(reason));
	if (ids != NULL && ids[0] != '\0')
		appendStringInfo(&detail, ", %s", ids);
	appendStringInfoChar(&detail, '}');
	return detail.data;
}

/* a JSON member "key": number, for the ids of coupon_error */
char *
json_id(const char *key, int64 value)
{
	StringInfoData m;

	initStringInfo(&m);
	escape_json(&m, key);
	appendStringInfo(&m, ": " INT64_FORMAT, value);
	return m.data;
}

/* a JSON member "key": "value", escaped */
char *
json_text(const char *key, const char *value)
{
	StringInfoData m;

	initStringInfo(&m);
	escape_json(&m, key);
	appendStringInfoString(&m, ": ");
	escape_json(&m, value);
	return m.data;
}

/* the members of a followed by those of b */
char *
json_join(const char *a, const char *b)
{
	return psprintf("%s, %s", a, b);
}

/* a required argument that is NULL is malformed input */
void
require_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		coupon_error(REASON_MISSING_ARGUMENT, json_text("argument", name),
					 "%s must not be null", name);
}

/* a required bigint argument */
int64
arg_int64(FunctionCallInfo fcinfo, int argno, const char *name)
{
	require_arg(fcinfo, argno, name);
	return PG_GETARG_INT64(argno);
}

/* amounts are 0 .. 10^15 minor units everywhere */
void
check_amount(int64 value, const char *name)
{
	if (value < 0 || value > COUPON_MAX_AMOUNT)
		coupon_error(REASON_INVALID_AMOUNT, json_text("argument", name),
					 "%s must be between 0 and 10^15", name);
}

/* a required amount argument */
int64
arg_amount(FunctionCallInfo fcinfo, int argno, const char *name)
{
	int64		value = arg_int64(fcinfo, argno, name);

	check_amount(value, name);
	return value;
}

/* a required caller id (user_id, order_id, name): 1..200 characters */
char *
arg_id_text(FunctionCallInfo fcinfo, int argno, const char *name,
			CouponReason reason)
{
	text	   *t;
	int			len;

	require_arg(fcinfo, argno, name);
	t = PG_GETARG_TEXT_PP(argno);
	len = pg_mbstrlen_with_len(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	if (len < 1 || len > COUPON_MAX_ID_LEN)
		coupon_error(reason, json_join(json_text("argument", name), json_id("length", len)),
					 "%s must be 1 to 200 characters long", name);
	return text_to_cstring(t);
}

/* a required integer argument within [lo, hi] */
int32
arg_int32_range(FunctionCallInfo fcinfo, int argno, const char *name,
				int32 lo, int32 hi, CouponReason reason)
{
	int32		v;

	require_arg(fcinfo, argno, name);
	v = PG_GETARG_INT32(argno);
	if (v < lo || v > hi)
		coupon_error(reason, json_text("argument", name),
					 "%s must be between %d and %d", name, lo, hi);
	return v;
}

/*
 * coupon.reasons(): the reason table as rows (reason, sqlstate,
 * http_status, hint), for SQL and for the test that holds docs/errors.md
 * to it.
 */
Datum
coupon_reasons(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = REASON_NONE + 1; i < REASON_COUNT; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};
		const char *hint = reason_hint((CouponReason) i);

		values[0] = CStringGetTextDatum(reason_name((CouponReason) i));
		values[1] = CStringGetTextDatum(unpack_sql_state(reason_sqlstate((CouponReason) i)));
		values[2] = Int32GetDatum(reason_http_status((CouponReason) i));
		values[3] = hint ? CStringGetTextDatum(hint) : (Datum) 0;
		nulls[3] = (hint == NULL);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * coupon.raise_error(reason, message, detail): the SQL functions' way to
 * raise a business error, with the SQLSTATE and hint of the reason table
 * and the members of `detail` (a JSON object, or NULL) after the reason.
 */
Datum
coupon_raise_error(PG_FUNCTION_ARGS)
{
	CouponReason reason;
	char	   *ids = NULL;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		elog(ERROR, "raise_error() needs a reason and a message");
	reason = reason_from_name(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	if (reason == REASON_COUNT || reason == REASON_NONE)
		elog(ERROR, "raise_error(): unknown reason \"%s\"", text_to_cstring(PG_GETARG_TEXT_PP(0)));
	if (!PG_ARGISNULL(2))
	{
		Jsonb	   *detail = PG_GETARG_JSONB_P(2);
		char	   *text;

		if (!JB_ROOT_IS_OBJECT(detail))
			elog(ERROR, "raise_error(): detail must be a JSON object");
		text = JsonbToCString(NULL, &detail->root, VARSIZE(detail));
		/* its members, without the braces */
		if (JB_ROOT_COUNT(detail) > 0)
			ids = pnstrdup(text + 1, strlen(text) - 2);
	}
	coupon_error(reason, ids, "%s", text_to_cstring(PG_GETARG_TEXT_PP(1)));
	PG_RETURN_VOID();
}
