/*
 * codefmt.c
 *		Coupon code text: alphabet, check character, display form.
 *		Pure C, no PostgreSQL headers, unit-tested on its own.
 */
#include <ctype.h>
#include <string.h>

#include "codefmt.h"

#define ALPHABET_SIZE 32

/* position of c in the alphabet, or -1 */
static int
code_value(char c)
{
	const char *p = strchr(CODE_ALPHABET, c);

	return (c != '\0' && p != NULL) ? (int) (p - CODE_ALPHABET) : -1;
}

/*
 * Luhn mod N over the alphabet: catches every single-character mistake and
 * most swaps of neighbours.
 */
char
code_check_char(const char *body, size_t len)
{
	int			factor = 2;
	int			sum = 0;

	for (size_t i = len; i > 0; i--)
	{
		int			addend = factor * code_value(body[i - 1]);

		factor = (factor == 2) ? 1 : 2;
		sum += addend / ALPHABET_SIZE + addend % ALPHABET_SIZE;
	}
	return CODE_ALPHABET[(ALPHABET_SIZE - sum % ALPHABET_SIZE) % ALPHABET_SIZE];
}

/* turn CODE_BODY_LEN random bytes into a canonical code */
void
code_from_random(const uint8_t *random, char *out)
{
	/* 256 is a multiple of 32, so masking keeps every character equally likely */
	for (int i = 0; i < CODE_BODY_LEN; i++)
		out[i] = CODE_ALPHABET[random[i] & (ALPHABET_SIZE - 1)];
	out[CODE_BODY_LEN] = code_check_char(out, CODE_BODY_LEN);
	out[CODE_LEN] = '\0';
}

/* canonical code -> XXXX-XXXX-XXXX-XXXX */
void
code_display(const char *code, char *out)
{
	int			o = 0;

	for (int i = 0; i < CODE_LEN; i++)
	{
		if (i > 0 && i % 4 == 0)
			out[o++] = '-';
		out[o++] = code[i];
	}
	out[o] = '\0';
}

/* typed text -> canonical code, or false */
bool
code_normalize(const char *in, size_t len, char *out)
{
	int			n = 0;

	for (size_t i = 0; i < len; i++)
	{
		char		c = in[i];

		if (c == '-' || c == ' ')
			continue;
		if (n == CODE_LEN)
			return false;
		c = (char) toupper((unsigned char) c);
		if (code_value(c) < 0)
			return false;
		out[n++] = c;
	}
	out[n] = '\0';
	if (n != CODE_LEN)
		return false;
	return code_check_char(out, CODE_BODY_LEN) == out[CODE_BODY_LEN];
}
