/*
 * currency.c
 *		ISO 4217 currency codes.  Pure C, unit-tested on its own.
 */
#include <stdlib.h>
#include <string.h>

#include "currency.h"

/* active ISO 4217 codes, sorted for bsearch (the unit test checks the order) */
static const char *const currencies[] = {
	"AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN",
	"BAM", "BBD", "BDT", "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL",
	"BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CLP", "CNY",
	"COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP",
	"ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD",
	"GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR",
	"IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF",
	"KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL",
	"LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR",
	"MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR",
	"NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR",
	"RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD",
	"SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
	"TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX",
	"USD", "UYU", "UZS", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XOF",
	"XPF", "YER", "ZAR", "ZMW", "ZWL"
};

/* bsearch comparator over the table */
static int
compare_code(const void *key, const void *member)
{
	return strcmp((const char *) key, *(const char *const *) member);
}

/* is `code` an active ISO 4217 code? */
bool
currency_is_known(const char *code)
{
	if (code == NULL || strlen(code) != 3)
		return false;
	return bsearch(code, currencies, sizeof(currencies) / sizeof(currencies[0]),
				   sizeof(currencies[0]), compare_code) != NULL;
}

/* for the unit test: is the table sorted and free of duplicates? */
bool
currency_table_sorted(void)
{
	for (size_t i = 1; i < sizeof(currencies) / sizeof(currencies[0]); i++)
		if (strcmp(currencies[i - 1], currencies[i]) >= 0)
			return false;
	return true;
}
