/*
 * merchant.c
 *		coupon.create_merchant: tenants.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

#include "callctx.h"
#include "coupon.h"
#include "currency.h"
#include "error.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(coupon_create_merchant);

static SavedPlan insert_plan = {
	.sql = "INSERT INTO coupon.merchant (name, currency, commission_bp, pg_fee_bp,"
	" settlement_delay_days) VALUES ($1, $2, $3, $4, $5) RETURNING *",
	.nargs = 5,
	.argtypes = {TEXTOID, TEXTOID, INT4OID, INT4OID, INT4OID}
};

/* coupon.create_merchant(name, currency, commission_bp, pg_fee_bp, settlement_delay_days) */
Datum
coupon_create_merchant(PG_FUNCTION_ARGS)
{
	char	   *name = arg_id_text(fcinfo, 0, "name", REASON_INVALID_NAME);
	char	   *currency;
	Datum		args[5];
	Datum		result;

	require_arg(fcinfo, 1, "currency");
	currency = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!currency_is_known(currency))
		coupon_error(REASON_INVALID_CURRENCY, NULL,
					 "currency is not an ISO 4217 code");

	args[0] = CStringGetTextDatum(name);
	args[1] = CStringGetTextDatum(currency);
	args[2] = Int32GetDatum(arg_int32_range(fcinfo, 2, "commission_bp", 0, 10000,
											 REASON_INVALID_PERCENT));
	args[3] = Int32GetDatum(arg_int32_range(fcinfo, 3, "pg_fee_bp", 0, 10000,
											 REASON_INVALID_PERCENT));
	args[4] = Int32GetDatum(arg_int32_range(fcinfo, 4, "settlement_delay_days", 0, 365,
											 REASON_INVALID_DELAY));

	call_begin(CALL_VOLATILE);
	spi_run(&insert_plan, args, NULL, false, 1);
	result = spi_result_row(fcinfo);
	call_end(CALL_VOLATILE);
	PG_RETURN_DATUM(result);
}
