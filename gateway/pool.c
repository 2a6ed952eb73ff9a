/*
 * pool.c - per-thread free lists for the long-lived per-connection records.
 *
 * A gateway holds tens of thousands of idle connections, each with a few
 * fixed-size records (connection, session, Socket.IO socket and session,
 * chat socket). Carved from slabs of POOL_SLAB, they pack densely, without
 * malloc's per-chunk header, and apart from the short-lived allocations of
 * handshakes, whose holes would otherwise stay resident between them
 * (docs/decisions.md 26). Each thread has its own lists, so no lock: a
 * record freed on another thread than the one that made it joins that
 * thread's list. Slabs are never given back; a freed record waits for the
 * next connection. AddressSanitizer builds use malloc for every record, so a
 * use after free is still caught.
 */
#include <string.h>

#include "gw_loop.h"

#if defined(__SANITIZE_ADDRESS__)
#define POOL_PASSTHROUGH 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_PASSTHROUGH 1
#endif
#endif

#define POOL_SLAB 64

#ifdef POOL_PASSTHROUGH

void *gw_pool_get(gw_pool *p)
{
    return pr_calloc(1, p->size);
}

void gw_pool_put(gw_pool *p, void *obj)
{
    (void)p;
    pr_free(obj);
}

#else

void *gw_pool_get(gw_pool *p)
{
    if (!p->free) {
        char *slab = pr_malloc(p->size * POOL_SLAB);
        for (int i = POOL_SLAB - 1; i >= 0; i--) {
            void **obj = (void **)(slab + (size_t)i * p->size);
            *obj = p->free;
            p->free = obj;
        }
    }
    void **obj = p->free;
    p->free = *obj;
    memset(obj, 0, p->size);
    return obj;
}

void gw_pool_put(gw_pool *p, void *obj)
{
    if (!obj)
        return;
    *(void **)obj = p->free;
    p->free = obj;
}

#endif

/* Output queue nodes: one per message queued on a connection, so a room
 * delivery costs no malloc. */
static _Thread_local gw_pool onode_pool = GW_POOL(gw_onode);

gw_onode *gw__onode_alloc(void)
{
    return gw_pool_get(&onode_pool);
}

void gw__onode_release(gw_onode *n)
{
    gw_pool_put(&onode_pool, n);
}

void gw__onode_release_all(gw_onode *head)
{
    while (head) {
        gw_onode *n = head;
        head = n->next;
        gw__blob_unref(n->blob);
        gw__onode_release(n);
    }
}
