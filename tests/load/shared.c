/* chat-load: state shared by the processes (room and typing modes), mapped
 * before the fork. */
#include <sys/mman.h>

#include "load.h"

ld_shared_state ld_shared;

static void *shared_alloc(size_t bytes)
{
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int ld_shared_init(void)
{
    ld_shared_state *s = &ld_shared;
    unsigned k = ld_opt.senders;
    /* typing send times: each sender's share of the rate over the run, with
     * room to spare; later ones go unmeasured (still counted) */
    s->ts_max = (size_t)(ld_opt.rate / k * (ld_opt.warmup + ld_opt.duration + 4) * 1.5) + 1024;
    s->acked = shared_alloc(k * sizeof *s->acked);
    s->sent = shared_alloc(k * sizeof *s->sent);
    s->last = shared_alloc((size_t)ld_opt.conns * k * sizeof *s->last);
    s->dead = shared_alloc(ld_opt.conns);
    s->ts = ld_opt.mode == M_TYPING ? shared_alloc(k * s->ts_max * sizeof *s->ts) : NULL;
    return s->acked && s->sent && s->last && s->dead && (ld_opt.mode != M_TYPING || s->ts) ? 0 : -1;
}
