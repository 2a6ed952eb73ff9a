/* metrics.c - the Prometheus text page of /metrics. */
#include <event2/buffer.h>
#include <inttypes.h>

#include "config.h"
#include "st.h"

static void counter(struct evbuffer *out, const char *name, const char *help, uint64_t v)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", name, help, name,
                        name, v);
}

static void gauge(struct evbuffer *out, const char *name, const char *help, double v)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name,
                        v);
}

void st_metrics_write(st_ctx *c, struct evbuffer *out)
{
    const st_stats *s = &c->stats;
    counter(out, "chat_storage_messages_stored_total", "New messages committed.",
            s->messages_stored);
    counter(out, "chat_storage_messages_duplicate_total",
            "Messages whose (sender, room, clientMsgId) was stored before.", s->messages_duplicate);
    counter(out, "chat_storage_messages_reused_total",
            "Messages refused: their (sender, room, clientMsgId) names another text.",
            s->messages_reused);
    counter(out, "chat_storage_messages_forbidden_total",
            "Messages refused because the sender is not a member.", s->messages_forbidden);
    counter(out, "chat_storage_messages_retried_total",
            "Messages run again after a concurrent duplicate.", s->messages_retried);
    counter(out, "chat_storage_entries_malformed_total", "Stream entries dropped as malformed.",
            s->entries_malformed);
    counter(out, "chat_storage_receipts_applied_total", "Receipt lines applied.",
            s->receipts_applied);
    counter(out, "chat_storage_status_events_total", "messageStatus events published.",
            s->status_events);
    counter(out, "chat_storage_db_errors_total", "Failed batch transactions (retried).",
            s->db_errors);

    /* batch size histogram: entries per committed batch */
    static const char *const le[] = {"1", "10", "100", "1000", "10000", "+Inf"};
    evbuffer_add_printf(out, "# HELP chat_storage_batch_entries Stream entries per batch.\n"
                             "# TYPE chat_storage_batch_entries histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < 6; i++) {
        cum += s->batch_size_le[i];
        evbuffer_add_printf(out, "chat_storage_batch_entries_bucket{le=\"%s\"} %" PRIu64 "\n",
                            le[i], cum);
    }
    evbuffer_add_printf(out, "chat_storage_batch_entries_sum %" PRIu64 "\n", s->batch_entries);
    evbuffer_add_printf(out, "chat_storage_batch_entries_count %" PRIu64 "\n", s->batches);
    gauge(out, "chat_storage_batch_seconds_sum",
          "Seconds from reading batches to their commit, summed.",
          (double)s->batch_seconds_us / 1e6);
    gauge(out, "chat_storage_batch_db_seconds_sum",
          "Seconds from sending batches to the database to their commit, summed.",
          (double)s->batch_db_us / 1e6);

    evbuffer_add_printf(out, "# HELP chat_storage_message_latency_seconds Time from a new "
                             "message's XADD (Redis' clock) to its publish (this host's).\n"
                             "# TYPE chat_storage_message_latency_seconds histogram\n");
    cum = 0;
    for (int i = 0; i < ST_LATENCY_BUCKETS; i++) {
        cum += s->latency_le[i];
        if (i < ST_LATENCY_BUCKETS - 1)
            evbuffer_add_printf(
                out, "chat_storage_message_latency_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                st_latency_le[i] / 1000.0, cum);
        else
            evbuffer_add_printf(
                out, "chat_storage_message_latency_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    evbuffer_add_printf(out, "chat_storage_message_latency_seconds_sum %.17g\n",
                        (double)s->latency_ms_sum / 1000.0);
    evbuffer_add_printf(out, "chat_storage_message_latency_seconds_count %" PRIu64 "\n", cum);

    counter(out, "chat_storage_replay_requests_total", "Replay and sync requests answered.",
            s->replay_requests);
    counter(out, "chat_storage_replay_overflows_total",
            "Replay and sync requests answered with overflow.", s->replay_overflows);
    counter(out, "chat_storage_replay_errors_total", "Replay and sync requests that failed.",
            s->replay_errors);
    counter(out, "chat_storage_posts_total", "Messages posted through the HTTP API.", s->posts);
    counter(out, "chat_storage_post_timeouts_total", "Posted messages without an ack in time.",
            s->post_timeouts);
    counter(out, "chat_storage_leases_acquired_total", "Shard leases acquired.", s->lease_acquired);
    counter(out, "chat_storage_leases_lost_total", "Shard leases lost before release.",
            s->lease_lost);
    counter(out, "chat_storage_cache_rebuilds_total",
            "Membership cache rebuilt from PostgreSQL after Redis lost it.", s->cache_rebuilds);
    gauge(out, "chat_storage_owned_shards", "Ingest shards this replica owns.", st_ingest_owned(c));
    gauge(out, "chat_storage_db_queued", "Queries queued or running (API and replay pool).",
          c->db ? st_pg_queued(c->db) : 0);
    gauge(out, "chat_storage_ready", "1 when PostgreSQL and Redis are up and migrated.",
          c->migrated && c->db && st_pg_ready(c->db) && st_pg_ready(c->ingest_db) &&
                  st_redis_ready(c->redis)
              ? 1
              : 0);
    gauge(out, "chat_storage_uptime_seconds", "Seconds since start.",
          (double)(st_now_ms() - c->started_ms) / 1000.0);
}
