/* metrics.c - the Prometheus text page of /metrics. */
#include <event2/buffer.h>
#include <stddef.h>

#include "cm_clock.h"
#include "cm_metrics.h"
#include "config.h"
#include "st.h"

/* The counters of st_stats, in the order of the page: before the
 * histograms, then after them. */
typedef struct {
    const char *name, *help;
    size_t offset; /* of a uint64_t in st_stats */
} counter;

static const counter ingest_counters[] = {
    {"chat_storage_messages_stored_total", "New messages committed.",
     offsetof(st_stats, messages_stored)},
    {"chat_storage_messages_duplicate_total",
     "Messages whose (sender, room, clientMsgId) was stored before.",
     offsetof(st_stats, messages_duplicate)},
    {"chat_storage_messages_reused_total",
     "Messages refused: their (sender, room, clientMsgId) names another text.",
     offsetof(st_stats, messages_reused)},
    {"chat_storage_messages_forbidden_total",
     "Messages refused because the sender is not a member.",
     offsetof(st_stats, messages_forbidden)},
    {"chat_storage_messages_retried_total", "Messages run again after a concurrent duplicate.",
     offsetof(st_stats, messages_retried)},
    {"chat_storage_entries_malformed_total", "Stream entries dropped as malformed.",
     offsetof(st_stats, entries_malformed)},
    {"chat_storage_receipts_applied_total", "Receipt lines applied.",
     offsetof(st_stats, receipts_applied)},
    {"chat_storage_status_events_total", "messageStatus events published.",
     offsetof(st_stats, status_events)},
    {"chat_storage_db_errors_total", "Failed batch transactions (retried).",
     offsetof(st_stats, db_errors)},
    {"chat_storage_fast_batches_total",
     "Batches decided in the room cache and written set-based.",
     offsetof(st_stats, fast_batches)},
    {"chat_storage_fast_refused_total",
     "Batches the room cache could not decide (run through chat_batch_load).",
     offsetof(st_stats, fast_refused)},
    {"chat_storage_fast_aborts_total",
     "Room-cache statements that found the cache stale or failed (run again through "
     "chat_batch_load).",
     offsetof(st_stats, fast_aborts)},
};

static const counter other_counters[] = {
    {"chat_storage_replay_requests_total", "Replay and sync requests answered.",
     offsetof(st_stats, replay_requests)},
    {"chat_storage_replay_overflows_total", "Replay and sync requests answered with overflow.",
     offsetof(st_stats, replay_overflows)},
    {"chat_storage_replay_errors_total", "Replay and sync requests that failed.",
     offsetof(st_stats, replay_errors)},
    {"chat_storage_posts_total", "Messages posted through the HTTP API.",
     offsetof(st_stats, posts)},
    {"chat_storage_post_timeouts_total", "Posted messages without an ack in time.",
     offsetof(st_stats, post_timeouts)},
    {"chat_storage_leases_acquired_total", "Shard leases acquired.",
     offsetof(st_stats, lease_acquired)},
    {"chat_storage_leases_lost_total", "Shard leases lost before release.",
     offsetof(st_stats, lease_lost)},
    {"chat_storage_leases_released_total",
     "Shards handed over to another replica (over this one's share).",
     offsetof(st_stats, lease_released)},
    {"chat_storage_cache_rebuilds_total",
     "Membership cache rebuilt from PostgreSQL after Redis lost it.",
     offsetof(st_stats, cache_rebuilds)},
};

static void counters(pr_buf *out, const st_stats *s, const counter *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cm_metric_counter(out, t[i].name, t[i].help,
                          *(const uint64_t *)((const char *)s + t[i].offset));
}

static void render(st_ctx *c, pr_buf *out)
{
    const st_stats *s = &c->stats;
    counters(out, s, ingest_counters, sizeof ingest_counters / sizeof ingest_counters[0]);

    /* entries per committed batch */
    static const double batch_le[] = {1, 10, 100, 1000, 10000};
    cm_metric_histogram(
        out, &(cm_histogram){"chat_storage_batch_entries", "Stream entries per batch.", 6, batch_le,
                             s->batch_size_le, (double)s->batch_entries, s->batches});
    cm_metric_gauge(out, "chat_storage_batch_seconds_sum",
                    "Seconds from reading batches to their commit, summed.",
                    (double)s->batch_seconds_us / 1e6);
    cm_metric_gauge(out, "chat_storage_batch_db_seconds_sum",
                    "Seconds from sending batches to the database to their commit, summed.",
                    (double)s->batch_db_us / 1e6);

    double latency_le[ST_LATENCY_BUCKETS - 1];
    uint64_t latency_count = 0;
    for (int i = 0; i < ST_LATENCY_BUCKETS; i++) {
        if (i < ST_LATENCY_BUCKETS - 1)
            latency_le[i] = st_latency_le[i] / 1000.0;
        latency_count += s->latency_le[i];
    }
    cm_metric_histogram(out, &(cm_histogram){"chat_storage_message_latency_seconds",
                                             "Time from a new message's XADD (Redis' clock) to "
                                             "its publish (this host's).",
                                             ST_LATENCY_BUCKETS, latency_le, s->latency_le,
                                             (double)s->latency_ms_sum / 1000.0, latency_count});

    counters(out, s, other_counters, sizeof other_counters / sizeof other_counters[0]);
    cm_metric_gauge(out, "chat_storage_owned_shards", "Ingest shards this replica owns.",
                    st_ingest_owned(c));
    pr_buf_appendf(out,
                   "# HELP chat_storage_shard_owned 1 for each ingest shard this replica owns.\n"
                   "# TYPE chat_storage_shard_owned gauge\n");
    for (unsigned i = 0; i < c->cfg->ingest_shards; i++)
        pr_buf_appendf(out, "chat_storage_shard_owned{shard=\"%u\"} %d\n", i,
                       st_ingest_owns(c, i));
    unsigned target;
    unsigned live = st_ingest_view(c, &target);
    cm_metric_gauge(out, "chat_storage_replicas_live",
                    "Live storage replicas as this one last saw them (0: not known).", live);
    cm_metric_gauge(out, "chat_storage_shards_target",
                    "Ingest shards this replica's share is among the live ones.", target);
    cm_metric_gauge(out, "chat_storage_db_queued",
                    "Queries queued or running (API and replay pool).",
                    c->db ? st_pg_queued(c->db) : 0);
    cm_metric_gauge(out, "chat_storage_ready", "1 when PostgreSQL and Redis are up and migrated.",
                    c->migrated && c->db && st_pg_ready(c->db) && st_pg_ready(c->ingest_db) &&
                            cm_redis_ready(c->redis)
                        ? 1
                        : 0);
    cm_metric_gauge(out, "chat_storage_uptime_seconds", "Seconds since start.",
                    (double)(cm_now_ms() - c->started_ms) / 1000.0);
}

void st_metrics_write(st_ctx *c, struct evbuffer *out)
{
    pr_buf b;
    pr_buf_init(&b, 1u << 20);
    render(c, &b);
    evbuffer_add(out, b.ptr, b.len);
    pr_buf_dispose(&b);
}
