/*-------------------------------------------------------------------------
 *
 * htab.c
 *	  Chained hash table from C strings to pointers.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "htab.h"
#include "util.h"

#define HTAB_INITIAL_BUCKETS 1024

/* FNV-1a with a final mix: cheap and good enough for ids chosen by clients. */
uint64_t
hash_bytes(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t	h = UINT64_C(0xcbf29ce484222325);

	for (size_t i = 0; i < len; i++)
	{
		h ^= p[i];
		h *= UINT64_C(0x100000001b3);
	}
	h ^= h >> 33;
	h *= UINT64_C(0xff51afd7ed558ccd);
	h ^= h >> 33;
	return h;
}

/* Start with a table big enough that small test runs never resize. */
void
htab_init(HTab *h)
{
	h->nbuckets = HTAB_INITIAL_BUCKETS;
	h->count = 0;
	h->buckets = xcalloc(h->nbuckets, sizeof(HTabEntry *));
}

/* Look a key up; NULL when absent. */
void *
htab_get(const HTab *h, const char *key)
{
	uint64_t	hash = hash_bytes(key, strlen(key));

	for (HTabEntry *e = h->buckets[hash & (h->nbuckets - 1)]; e; e = e->next)
	{
		if (e->hash == hash && strcmp(e->key, key) == 0)
			return e->value;
	}
	return NULL;
}

/* Double the bucket array so chains stay short as the store grows. */
static void
htab_grow(HTab *h)
{
	size_t		nb = h->nbuckets * 2;
	HTabEntry **b = xcalloc(nb, sizeof(HTabEntry *));

	for (size_t i = 0; i < h->nbuckets; i++)
	{
		HTabEntry  *e = h->buckets[i];

		while (e)
		{
			HTabEntry  *next = e->next;
			size_t		slot = e->hash & (nb - 1);

			e->next = b[slot];
			b[slot] = e;
			e = next;
		}
	}
	free(h->buckets);
	h->buckets = b;
	h->nbuckets = nb;
}

/* Insert a key the caller has checked is absent. */
void
htab_put(HTab *h, const char *key, void *value)
{
	HTabEntry  *e = xmalloc(sizeof(HTabEntry));
	size_t		slot;

	if (h->count + 1 > h->nbuckets)
		htab_grow(h);
	e->hash = hash_bytes(key, strlen(key));
	e->key = key;
	e->value = value;
	slot = e->hash & (h->nbuckets - 1);
	e->next = h->buckets[slot];
	h->buckets[slot] = e;
	h->count++;
}

/*
 * Map key to value, replacing what it mapped to (a failed payment attempt
 * that a new one takes the place of); key must live as long as value.
 */
void
htab_set(HTab *h, const char *key, void *value)
{
	uint64_t	hash;
	HTabEntry  *e;

	if (h->nbuckets > 0)
	{
		hash = hash_bytes(key, strlen(key));
		for (e = h->buckets[hash & (h->nbuckets - 1)]; e; e = e->next)
		{
			if (e->hash == hash && strcmp(e->key, key) == 0)
			{
				e->key = key;
				e->value = value;
				return;
			}
		}
	}
	htab_put(h, key, value);
}

/* Free the table, and the values too when free_value is given. */
void
htab_destroy(HTab *h, void (*free_value) (void *))
{
	for (size_t i = 0; i < h->nbuckets; i++)
	{
		HTabEntry  *e = h->buckets[i];

		while (e)
		{
			HTabEntry  *next = e->next;

			if (free_value)
				free_value(e->value);
			free(e);
			e = next;
		}
	}
	free(h->buckets);
	h->buckets = NULL;
	h->nbuckets = h->count = 0;
}
