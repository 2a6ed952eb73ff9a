/*
 * pr_map.h - an intrusive hash table keyed by byte strings: the one behind
 * the engine's session ids, the Redis link's channels and the chat's rooms,
 * users, receipts and joins.
 *
 * The caller embeds a pr_map_entry in its record and tells the map, once, how
 * to read a record's key (key_cb); the map stores no key and allocates
 * nothing but its bucket array, so a lookup allocates nothing and a record
 * grows by one pointer. Where the key lives is the caller's business: a
 * fixed-length id inside the record, a flexible array member, or a copy the
 * record owns. A key must not change while its record is in the map.
 *
 * Chained buckets, a power of two of them, doubled when the count passes the
 * number of buckets; hash pr_fnv1a64 (not keyed: see pr.h). Keys are any
 * bytes (NULs included). Single-threaded; the map owns its buckets, the
 * caller owns the records.
 */
#ifndef PR_MAP_H
#define PR_MAP_H

#include "pr.h"

typedef struct pr_map_entry {
    struct pr_map_entry *next;
} pr_map_entry;

/* The key of a record in the map, borrowed from the record. */
typedef pr_view (*pr_map_key_cb)(const pr_map_entry *e);

typedef struct {
    pr_map_entry **buckets;
    size_t mask; /* buckets - 1 */
    size_t n;    /* records in the map */
    pr_map_key_cb key;
} pr_map;

/* nbuckets: a power of two, the size it starts at. */
void pr_map_init(pr_map *m, size_t nbuckets, pr_map_key_cb key);
/* Frees the buckets, not the records; m may be re-inited. A disposed (or
 * zeroed) map finds and visits nothing. */
void pr_map_dispose(pr_map *m);
pr_map_entry *pr_map_find(const pr_map *m, pr_view key);
/* The key of e must not be in the map yet (pr_map_find first). */
void pr_map_insert(pr_map *m, pr_map_entry *e);
/* Unlinks e; returns 0, or PR_ENOTFOUND when e is not in the map. */
int pr_map_remove(pr_map *m, pr_map_entry *e);

/*
 * Visits every record once, in no set order. The record just returned may be
 * removed (and freed) before the next call; inserting, or removing another
 * record, during the walk may skip or repeat records.
 *
 *   pr_map_iter it = pr_map_iter_make(&m);
 *   for (pr_map_entry *e; (e = pr_map_next(&it));) ...
 */
typedef struct {
    const pr_map *m;
    size_t bucket;
    pr_map_entry *next;
} pr_map_iter;

static inline pr_map_iter pr_map_iter_make(const pr_map *m)
{
    return (pr_map_iter){m, 0, NULL};
}
pr_map_entry *pr_map_next(pr_map_iter *it);

#endif
