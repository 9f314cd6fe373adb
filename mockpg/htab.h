/*-------------------------------------------------------------------------
 *
 * htab.h
 *	  A chained hash table from C strings to pointers, used by the store to
 *	  find payments by paymentKey and by orderId and idempotency records by
 *	  key.  Keys are not copied: they live inside the stored value.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MOCKPG_HTAB_H
#define MOCKPG_HTAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct HTabEntry
{
	struct HTabEntry *next;
	uint64_t	hash;
	const char *key;
	void	   *value;
} HTabEntry;

typedef struct HTab
{
	HTabEntry **buckets;
	size_t		nbuckets;
	size_t		count;
} HTab;

extern uint64_t hash_bytes(const void *data, size_t len);
extern void htab_init(HTab *h);
extern void *htab_get(const HTab *h, const char *key);
extern void htab_put(HTab *h, const char *key, void *value);
extern void htab_set(HTab *h, const char *key, void *value);
extern void htab_destroy(HTab *h, void (*free_value) (void *));

#endif							/* MOCKPG_HTAB_H */
