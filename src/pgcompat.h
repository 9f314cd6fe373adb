/*
 * pgcompat.h
 *		The backend APIs this module uses that PostgreSQL 16 or 17 changed,
 *		each behind one name that builds against 15, 16 and 17 (the list
 *		and how it was checked: docs/portability.md).
 */
#ifndef COUPON_PGCOMPAT_H
#define COUPON_PGCOMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM >= 160000
/* 16 moved the varlena macros out of postgres.h */
#include "varatt.h"
#endif

/*
 * pg_parse_json's callbacks return JsonParseErrorType from 16 on (a parse
 * stops at the first one that is not JSON_SUCCESS), void before.
 */
#if PG_VERSION_NUM >= 160000
#define JSON_CALLBACK JsonParseErrorType
#define JSON_CALLBACK_DONE return JSON_SUCCESS
#else
#define JSON_CALLBACK void
#define JSON_CALLBACK_DONE return
#endif

/* 17 moved the backend's local transaction id into its virtual one */
#if PG_VERSION_NUM >= 170000
#define coupon_local_xid() (MyProc->vxid.lxid)
#else
#define coupon_local_xid() (MyProc->lxid)
#endif

/* 17: the lexer context, the wait event set's owner, the identity's table */
#if PG_VERSION_NUM >= 170000
#define coupon_json_lexer(json, len, need_escapes) \
	makeJsonLexContextCstringLen(NULL, (json), (len), PG_UTF8, (need_escapes))
#define coupon_wait_event_set(cxt, nevents) CreateWaitEventSet(NULL, (nevents))
#define coupon_identity_sequence(rel, attnum) getIdentitySequence((rel), (attnum), false)
#else
#define coupon_json_lexer(json, len, need_escapes) \
	makeJsonLexContextCstringLen((char *) (json), (len), PG_UTF8, (need_escapes))
#define coupon_wait_event_set(cxt, nevents) CreateWaitEventSet((cxt), (nevents))
#define coupon_identity_sequence(rel, attnum) \
	getIdentitySequence(RelationGetRelid(rel), (attnum), false)
#endif

/* 16: EvalPlanQualInit takes the result relations */
#if PG_VERSION_NUM >= 160000
#define coupon_epq_init(epq, estate) EvalPlanQualInit((epq), (estate), NULL, NIL, -1, NIL)
#else
#define coupon_epq_init(epq, estate) EvalPlanQualInit((epq), (estate), NULL, NIL, -1)
#endif

#endif							/* COUPON_PGCOMPAT_H */
