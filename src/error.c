/*
 * error.c
 *		The error contract of docs/errors.md: SQLSTATE PTnnn where nnn is
 *		the HTTP status, one plain sentence, DETAIL as JSON with the reason.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "coupon.h"
#include "error.h"

/* the PTnnn SQLSTATE of a reason */
int
reason_sqlstate(CouponReason reason)
{
	int			http = reason_http_status(reason);

	return MAKE_SQLSTATE('P', 'T', '0' + (http / 100) % 10,
						 '0' + (http / 10) % 10, '0' + http % 10);
}

/* raise a business error: message, DETAIL {"reason": ..., ids}, HINT */
void
coupon_error(CouponReason reason, const char *ids, const char *fmt,...)
{
	StringInfoData msg;
	StringInfoData detail;
	const char *hint = reason_hint(reason);

	initStringInfo(&msg);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&msg, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&msg, needed);
	}

	initStringInfo(&detail);
	appendStringInfo(&detail, "{\"reason\": \"%s\"", reason_name(reason));
	if (ids != NULL && ids[0] != '\0')
		appendStringInfo(&detail, ", %s", ids);
	appendStringInfoChar(&detail, '}');

	ereport(ERROR,
			(errcode(reason_sqlstate(reason)),
			 errmsg_internal("%s", msg.data),
			 errdetail_internal("%s", detail.data),
			 hint ? errhint("%s", hint) : 0));
	pg_unreachable();
}

/* a JSON member "key": value, to pass as the ids of coupon_error */
char *
json_id(const char *key, int64 value)
{
	return psprintf("\"%s\": " INT64_FORMAT, key, value);
}

/* a required argument that is NULL is malformed input */
void
require_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		coupon_error(REASON_MISSING_ARGUMENT, psprintf("\"argument\": \"%s\"", name),
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
		coupon_error(REASON_INVALID_AMOUNT, psprintf("\"argument\": \"%s\"", name),
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
		coupon_error(reason, psprintf("\"argument\": \"%s\", \"length\": %d", name, len),
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
		coupon_error(reason, psprintf("\"argument\": \"%s\"", name),
					 "%s must be between %d and %d", name, lo, hi);
	return v;
}
