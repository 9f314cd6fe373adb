/*-------------------------------------------------------------------------
 *
 * journal.h
 *	  The append-only journal that lets payments, cancels and idempotency
 *	  records survive a restart, with group commit: one writer thread
 *	  writes and fdatasync()s everything appended so far, then resumes every
 *	  request whose records are now on disk.  No answer that depends on a
 *	  record leaves before that record's fsync.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MOCKPG_JOURNAL_H
#define MOCKPG_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "timer.h"

/* Applies one replayed record to the store; false (with err) if it is invalid. */
typedef bool (*JournalApplyFn) (json_t *record, char *err, size_t errlen);

typedef struct JournalCounts
{
	bool		enabled;
	uint64_t	records;		/* appended by this process */
	uint64_t	batches;		/* fdatasync calls by this process */
	uint64_t	replayed;		/* records read back at start */
	uint64_t	durable_seq;
} JournalCounts;

extern void journal_open(const char *path, JournalApplyFn apply);
extern bool journal_enabled(void);
extern uint64_t journal_append(const char *line, size_t len);
extern uint64_t journal_last_seq(void);
extern bool journal_wait(uint64_t seq, SuspendFn suspend, WakeFn wake, void *arg);
extern void journal_close_waiters(void);
extern void journal_stop(void);
extern JournalCounts journal_counts(void);

#endif							/* MOCKPG_JOURNAL_H */
