/* pr_map.c - the intrusive string-keyed hash table (pr_map.h). */
#include "pr_map.h"

#include <string.h>

static pr_map_entry **bucket_of(const pr_map *m, pr_view key)
{
    return &m->buckets[pr_fnv1a64(key.ptr, key.len) & m->mask];
}

static void grow(pr_map *m)
{
    size_t nb = (m->mask + 1) * 2;
    pr_map_entry **b = pr_calloc(nb, sizeof *b);
    for (size_t i = 0; i <= m->mask; i++)
        for (pr_map_entry *e = m->buckets[i], *next; e; e = next) {
            next = e->next;
            pr_view k = m->key(e);
            pr_map_entry **to = &b[pr_fnv1a64(k.ptr, k.len) & (nb - 1)];
            e->next = *to;
            *to = e;
        }
    pr_free(m->buckets);
    m->buckets = b;
    m->mask = nb - 1;
}

void pr_map_init(pr_map *m, size_t nbuckets, pr_map_key_cb key)
{
    m->buckets = pr_calloc(nbuckets, sizeof *m->buckets);
    m->mask = nbuckets - 1;
    m->n = 0;
    m->key = key;
}

void pr_map_dispose(pr_map *m)
{
    pr_free(m->buckets);
    m->buckets = NULL;
    m->mask = m->n = 0;
}

pr_map_entry *pr_map_find(const pr_map *m, pr_view key)
{
    if (!m->buckets)
        return NULL;
    for (pr_map_entry *e = *bucket_of(m, key); e; e = e->next) {
        pr_view k = m->key(e);
        if (k.len == key.len && !memcmp(k.ptr, key.ptr, key.len))
            return e;
    }
    return NULL;
}

void pr_map_insert(pr_map *m, pr_map_entry *e)
{
    if (m->n + 1 > m->mask + 1)
        grow(m);
    pr_map_entry **b = bucket_of(m, m->key(e));
    e->next = *b;
    *b = e;
    m->n++;
}

int pr_map_remove(pr_map *m, pr_map_entry *e)
{
    for (pr_map_entry **pp = bucket_of(m, m->key(e)); *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            m->n--;
            return 0;
        }
    return PR_ENOTFOUND;
}

pr_map_entry *pr_map_next(pr_map_iter *it)
{
    const pr_map *m = it->m;
    while (!it->next) {
        if (!m->buckets || it->bucket > m->mask)
            return NULL;
        it->next = m->buckets[it->bucket++];
    }
    pr_map_entry *e = it->next;
    it->next = e->next;
    return e;
}
