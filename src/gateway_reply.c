/*
 * gateway_reply.c
 *		Reading what the payment gateway answered: a body screened, then
 *		parsed with pg_parse_json for the few members the saga needs, and
 *		any of its text made fit to be stored or shown.
 *
 * Nothing the gateway sends may raise an error here: a body that would
 * make the parser ereport (invalid UTF-8, nesting deep enough to reach
 * check_stack_depth, a \u escape the database encoding cannot hold) is
 * screened out or mended before it reaches the parser; such an answer
 * then reads as one without any of the members.
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/memutils.h"

#include "coupon.h"
#include "excerpt.h"
#include "gateway_reply.h"
#include "pgcompat.h"

/* deeper JSON is not a gateway answer (and would recurse in the parser) */
#define GATEWAY_MAX_JSON_DEPTH	64

/* which top-level member the next scalar belongs to */
typedef enum ReplyMember
{
	MEMBER_OTHER,
	MEMBER_STATUS,
	MEMBER_CODE,
	MEMBER_MESSAGE,
	MEMBER_TOTAL_AMOUNT,
	MEMBER_BALANCE_AMOUNT,
	MEMBER_CURRENCY
} ReplyMember;

/* what the JSON callbacks of gateway_parse_reply share */
typedef struct ReplyParseState
{
	JsonLexContext *lex;
	bool		is_object;
	ReplyMember member;
	char	   *status;
	char	   *code;
	char	   *message;
	char	   *currency;
	int64		total_amount;
	int64		balance_amount;
} ReplyParseState;

/* the code point of the 4 hex digits of a \u escape, or -1 */
static int
unicode_escape_value(const char *digits)
{
	int			cp = 0;

	for (int i = 0; i < 4; i++)
	{
		char		c = digits[i];

		cp <<= 4;
		if (c >= '0' && c <= '9')
			cp |= c - '0';
		else if (c >= 'a' && c <= 'f')
			cp |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			cp |= c - 'A' + 10;
		else
			return -1;
	}
	return cp;
}

/*
 * Check that body can go to pg_parse_json without an ereport: valid UTF-8,
 * not nested deeper than GATEWAY_MAX_JSON_DEPTH (the parser recurses and
 * would hit check_stack_depth), and, when the database is not UTF-8, no
 * \u escape of a non-ASCII character (pg_unicode_to_server would throw
 * where it cannot convert); those become "\u003f" ('?') in place.
 */
static bool
json_screen(char *body, int len)
{
	bool		ascii_escapes = (GetDatabaseEncoding() != PG_UTF8);
	bool		in_string = false;
	int			depth = 0;

	if (!pg_verify_mbstr(PG_UTF8, body, len, true))
		return false;

	for (int i = 0; i < len; i++)
	{
		char		c = body[i];

		if (in_string)
		{
			if (c == '"')
				in_string = false;
			else if (c == '\\' && i + 1 < len)
			{
				if (body[i + 1] == 'u' && i + 5 < len && ascii_escapes &&
					unicode_escape_value(body + i + 2) >= 0x80)
					memcpy(body + i + 2, "003f", 4);
				i++;			/* the escaped character is not a quote */
			}
		}
		else if (c == '"')
			in_string = true;
		else if (c == '{' || c == '[')
		{
			if (++depth > GATEWAY_MAX_JSON_DEPTH)
				return false;
		}
		else if (c == '}' || c == ']')
			depth--;
	}
	return true;
}

/* a JSON number token as a non-negative int64, or -1 */
static int64
json_amount(const char *token)
{
	int64		v = 0;

	if (*token == '\0')
		return -1;
	for (const char *p = token; *p; p++)
	{
		if (*p < '0' || *p > '9')
			return -1;			/* negative, fraction or exponent */
		if (v > (PG_INT64_MAX - (*p - '0')) / 10)
			return -1;
		v = v * 10 + (*p - '0');
	}
	return v;
}

/* pg_parse_json callback: note that the top level is an object */
static JSON_CALLBACK
reply_object_start(void *state)
{
	ReplyParseState *st = (ReplyParseState *) state;

	if (st->lex->lex_level == 0)
		st->is_object = true;
	JSON_CALLBACK_DONE;
}

/* pg_parse_json callback: which top-level member comes next */
static JSON_CALLBACK
reply_field_start(void *state, char *fname, bool isnull)
{
	ReplyParseState *st = (ReplyParseState *) state;

	if (st->lex->lex_level != 1)
		JSON_CALLBACK_DONE;
	if (strcmp(fname, "status") == 0)
		st->member = MEMBER_STATUS;
	else if (strcmp(fname, "code") == 0)
		st->member = MEMBER_CODE;
	else if (strcmp(fname, "message") == 0)
		st->member = MEMBER_MESSAGE;
	else if (strcmp(fname, "totalAmount") == 0)
		st->member = MEMBER_TOTAL_AMOUNT;
	else if (strcmp(fname, "balanceAmount") == 0)
		st->member = MEMBER_BALANCE_AMOUNT;
	else if (strcmp(fname, "currency") == 0)
		st->member = MEMBER_CURRENCY;
	else
		st->member = MEMBER_OTHER;
	JSON_CALLBACK_DONE;
}

/* pg_parse_json callback: keep the value of a member we want */
static JSON_CALLBACK
reply_scalar(void *state, char *token, JsonTokenType tokentype)
{
	ReplyParseState *st = (ReplyParseState *) state;
	ReplyMember member = st->member;
	bool		is_string = (tokentype == JSON_TOKEN_STRING);

	if (st->lex->lex_level != 1)
		JSON_CALLBACK_DONE;
	st->member = MEMBER_OTHER;
	switch (member)
	{
		case MEMBER_STATUS:
			st->status = is_string ? token : NULL;
			break;
		case MEMBER_CODE:
			st->code = is_string ? token : NULL;
			break;
		case MEMBER_MESSAGE:
			st->message = is_string ? token : NULL;
			break;
		case MEMBER_CURRENCY:
			st->currency = is_string ? token : NULL;
			break;
		case MEMBER_TOTAL_AMOUNT:
			st->total_amount = (tokentype == JSON_TOKEN_NUMBER) ? json_amount(token) : -1;
			break;
		case MEMBER_BALANCE_AMOUNT:
			st->balance_amount = (tokentype == JSON_TOKEN_NUMBER) ? json_amount(token) : -1;
			break;
		case MEMBER_OTHER:
			break;
	}
	JSON_CALLBACK_DONE;
}

/*
 * A parsed string in the caller's context, fit for the database encoding:
 * outside UTF-8 databases each non-ASCII character becomes '?'.
 */
static char *
reply_string(const char *s)
{
	char	   *copy;
	char	   *out;

	if (s == NULL)
		return NULL;
	if (GetDatabaseEncoding() == PG_UTF8)
		return pstrdup(s);
	copy = palloc(strlen(s) + 1);
	out = copy;
	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		if (*p < 0x80)
			*out++ = (char) *p;
		else if ((*p & 0xC0) != 0x80)
			*out++ = '?';		/* lead byte; continuation bytes vanish */
	}
	*out = '\0';
	return copy;
}

/* read status, code, message and the amounts of a gateway answer */
bool
gateway_parse_reply(const char *body, GatewayReply *reply)
{
	MemoryContext parse_cxt;
	MemoryContext oldcxt;
	ReplyParseState st;
	JsonSemAction sem;
	JsonParseErrorType err = JSON_SUCCESS;
	char	   *copy;
	int			len;
	bool		ok = false;

	reply->status = NULL;
	reply->code = NULL;
	reply->message = NULL;
	reply->currency = NULL;
	reply->total_amount = -1;
	reply->balance_amount = -1;
	if (body == NULL)
		return false;
	len = strlen(body);

	/* the parser pallocs every name and value: keep that out of the caller */
	parse_cxt = AllocSetContextCreate(CurrentMemoryContext,
									  "coupon gateway reply",
									  ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(parse_cxt);

	memset(&st, 0, sizeof(st));
	st.total_amount = -1;
	st.balance_amount = -1;
	st.member = MEMBER_OTHER;
	copy = pnstrdup(body, len);
	if (json_screen(copy, len))
	{
		st.lex = coupon_json_lexer(copy, len, true);
		memset(&sem, 0, sizeof(sem));
		sem.semstate = &st;
		sem.object_start = reply_object_start;
		sem.object_field_start = reply_field_start;
		sem.scalar = reply_scalar;
		err = pg_parse_json(st.lex, &sem);
		ok = (err == JSON_SUCCESS && st.is_object);
	}

	MemoryContextSwitchTo(oldcxt);
	if (ok)
	{
		reply->status = reply_string(st.status);
		reply->code = reply_string(st.code);
		reply->message = reply_string(st.message);
		reply->currency = reply_string(st.currency);
		reply->total_amount = st.total_amount;
		reply->balance_amount = st.balance_amount;
	}
	MemoryContextDelete(parse_cxt);
	return ok;
}


/*
 * What the gateway said, as it may be stored or put in an error: at most
 * EXCERPT_MAX_BYTES of whole characters, no control characters, and never
 * the gateway secret (a gateway that echoes request headers would
 * otherwise hand out the Basic credentials).  NULL stays NULL.
 */
char *
gateway_text(const char *text)
{
	char	   *out;

	if (text == NULL)
		return NULL;
	out = palloc(EXCERPT_MAX_BYTES + 1);
	excerpt_make(text, coupon_gateway_secret, out, EXCERPT_MAX_BYTES);
	return out;
}
