/*
 * migrate.c - applies the embedded storage/sql migrations at start-up and
 * checks the ingest shard count (docs/storage.md "Ingest shards").
 *
 * A chain of queries on c->ingest_db, whose one connection keeps the open
 * transaction between them: BEGIN and the advisory lock, "is version V
 * applied?", then the migration and its schema_migrations row, COMMIT. Any
 * failure rolls back and starts over after a backoff; every step is
 * idempotent, so starting over is always safe.
 *
 * Then, at every start, the functions (storage/sql/functions/, the one
 * place their text lives; the migrations keep types, tables and indexes,
 * and what they say of a function is history): BEGIN and the lock, "does
 * the database have a migration this binary does not know?" (then a newer
 * binary's functions are kept: ours may not fit its schema), else CREATE
 * OR REPLACE each and COMMIT. After the migrations, since the functions
 * use their types and tables; a migration that needs a function while it
 * runs defines it itself (0003, for its trigger).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"
#include "config.h"
#include "st.h"

/* pg_advisory_xact_lock key of schema changes: "chat" in ASCII */
#define MIGRATE_LOCK "1667785076"

enum {
    M_BOOTSTRAP,
    M_CHECK,
    M_APPLY,
    M_FUNCTIONS_CHECK,
    M_FUNCTIONS_APPLY,
    M_META,
    M_FINISHED,
    M_DONE /* disposed */
};

typedef struct {
    st_ctx *c;
    int step;
    unsigned index; /* migration being looked at */
    unsigned failures;
    struct event *retry;
    st_migrate_cb done;
    void *arg;
    char *sql; /* the text being run */
} migration_run;

static migration_run *run_of; /* the one run of this process */

static void step(migration_run *m);

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    migration_run *m = arg;
    m->step = M_BOOTSTRAP;
    m->index = 0;
    step(m);
}

static void rollback_cb(PGresult *res, const char *error, void *arg)
{
    (void)res;
    (void)error;
    (void)arg;
}

static void fail(migration_run *m, const char *what, const char *error)
{
    /* while PostgreSQL is away this repeats: once per backoff, rate-limited */
    CM_LOG_RATELIMITED(CM_LOG_ERROR, "event=migration_failed step=%s version=%u err=\"%s\"", what,
                       m->index < st_nmigrations ? st_migrations[m->index].version : 0,
                       error ? error : "?");
    /* a connection that broke lost its transaction; one that is fine must
     * not keep it open */
    st_pg_query(m->c->ingest_db, "ROLLBACK", 0, NULL, rollback_cb, NULL);
    unsigned shift = m->failures < 5 ? m->failures : 5;
    unsigned ms = 200u << shift;
    m->failures++;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(m->retry, &tv);
}

static void query_cb(PGresult *res, const char *error, void *arg)
{
    migration_run *m = arg;
    st_ctx *c = m->c;
    pr_free(m->sql);
    m->sql = NULL;
    if (m->step == M_DONE) { /* disposed while the query ran */
        event_free(m->retry);
        pr_free(m);
        return;
    }
    if (!res) {
        static const char *const names[] = {"bootstrap", "check",     "apply",
                                            "functions", "functions", "meta"};
        fail(m, names[m->step], error);
        return;
    }
    switch (m->step) {
    case M_BOOTSTRAP: m->step = st_nmigrations ? M_CHECK : M_FUNCTIONS_CHECK; break;
    case M_CHECK:
        if (PQntuples(res) == 1 && !strcmp(PQgetvalue(res, 0, 0), "1")) {
            /* applied before (by us or another replica): close the
             * transaction with the next step's query */
            m->index++;
            m->step = m->index < st_nmigrations ? M_CHECK : M_FUNCTIONS_CHECK;
            st_pg_query(c->ingest_db, "COMMIT", 0, NULL, rollback_cb, NULL);
        } else {
            m->step = M_APPLY;
        }
        break;
    case M_APPLY:
        CM_INFO("event=migration_applied version=%u name=%s", st_migrations[m->index].version,
                st_migrations[m->index].name);
        m->index++;
        m->step = m->index < st_nmigrations ? M_CHECK : M_FUNCTIONS_CHECK;
        break;
    case M_FUNCTIONS_CHECK:
        if (PQntuples(res) == 1 && !strcmp(PQgetvalue(res, 0, 0), "0")) {
            m->step = M_FUNCTIONS_APPLY;
        } else {
            CM_WARN("event=functions_kept msg=\"the database has migrations this binary does "
                    "not know: its functions stay\"");
            m->step = M_META;
            st_pg_query(c->ingest_db, "COMMIT", 0, NULL, rollback_cb, NULL);
        }
        break;
    case M_FUNCTIONS_APPLY:
        CM_INFO("event=functions_applied count=%u", st_nsql_functions);
        m->step = M_META;
        break;
    case M_META: {
        const char *stored = PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "";
        char want[16];
        snprintf(want, sizeof want, "%u", c->cfg->ingest_shards);
        if (strcmp(stored, want) != 0) {
            CM_ERROR("event=ingest_shards_mismatch stored=%s configured=%s msg=\"--ingest-shards "
                     "must equal the value the database was created with\"",
                     stored, want);
            m->step = M_FINISHED;
            m->done(-1, m->arg);
            return;
        }
        CM_INFO("event=migrations_done versions=%u ingest_shards=%s", st_nmigrations, stored);
        m->step = M_FINISHED;
        c->migrated = 1;
        m->done(0, m->arg);
        return;
    }
    default: return;
    }
    step(m);
}

static void step(migration_run *m)
{
    st_ctx *c = m->c;
    pr_buf b;
    pr_buf_init(&b, 16u << 20);
    int rc = 0;
    switch (m->step) {
    case M_BOOTSTRAP:
        rc = pr_buf_appendf(&b,
                            "BEGIN; SELECT pg_advisory_xact_lock(%s);"
                            " CREATE TABLE IF NOT EXISTS schema_migrations ("
                            " version int PRIMARY KEY,"
                            " applied_at timestamptz NOT NULL DEFAULT now()); COMMIT",
                            MIGRATE_LOCK);
        break;
    case M_CHECK:
        rc = pr_buf_appendf(&b,
                            "BEGIN; SELECT pg_advisory_xact_lock(%s);"
                            " SELECT count(*) FROM schema_migrations WHERE version = %u",
                            MIGRATE_LOCK, st_migrations[m->index].version);
        break;
    case M_APPLY:
        /* the file's statements, then its record, in the open transaction;
         * newlines keep a trailing comment from swallowing the INSERT */
        rc = pr_buf_appendf(&b,
                            "%s\n;\nINSERT INTO schema_migrations (version) VALUES (%u);"
                            " COMMIT",
                            st_migrations[m->index].sql, st_migrations[m->index].version);
        break;
    case M_FUNCTIONS_CHECK:
        rc = pr_buf_appendf(&b,
                            "BEGIN; SELECT pg_advisory_xact_lock(%s);"
                            " SELECT count(*) FROM schema_migrations WHERE version > %u",
                            MIGRATE_LOCK,
                            st_nmigrations ? st_migrations[st_nmigrations - 1].version : 0);
        break;
    case M_FUNCTIONS_APPLY:
        /* in the transaction the check opened; newlines keep a trailing
         * comment from swallowing what follows */
        for (unsigned i = 0; i < st_nsql_functions && rc == 0; i++)
            rc = pr_buf_appendf(&b, "%s\n;\n", st_sql_functions[i].sql);
        if (rc == 0)
            rc = pr_buf_append(&b, "COMMIT", 6);
        break;
    case M_META: {
        unsigned n = c->cfg->ingest_shards;
        rc = pr_buf_appendf(&b,
                            "BEGIN; SELECT pg_advisory_xact_lock(%s);"
                            " INSERT INTO meta (key, value) VALUES ('ingest_shards', '%u')"
                            " ON CONFLICT (key) DO NOTHING;"
                            " INSERT INTO shards (id) SELECT g FROM generate_series(0, %u) g"
                            " WHERE (SELECT value FROM meta WHERE key = 'ingest_shards') = '%u'"
                            " ON CONFLICT (id) DO NOTHING;"
                            " SELECT value FROM meta WHERE key = 'ingest_shards'; COMMIT",
                            MIGRATE_LOCK, n, n - 1, n);
        break;
    }
    default: pr_buf_dispose(&b); return;
    }
    if (rc == 0)
        rc = pr_buf_append_byte(&b, '\0');
    if (rc != 0) {
        pr_buf_dispose(&b);
        fail(m, "build", "migration too large");
        return;
    }
    m->sql = pr_buf_steal(&b, NULL);
    if (st_pg_query(c->ingest_db, m->sql, 0, NULL, query_cb, m) != 0) {
        pr_free(m->sql);
        m->sql = NULL;
        fail(m, "queue", "database queue full");
    }
}

void st_migrate(st_ctx *c, st_migrate_cb done, void *arg)
{
    migration_run *m = pr_calloc(1, sizeof *m);
    m->c = c;
    m->done = done;
    m->arg = arg;
    m->retry = evtimer_new(c->base, retry_cb, m);
    run_of = m;
    step(m);
}

void st_migrate_dispose(st_ctx *c)
{
    (void)c;
    migration_run *m = run_of;
    if (!m)
        return;
    run_of = NULL;
    /* a query still queued holds m: its callback frees it (st_pg_free runs
     * it with NULL) */
    if (m->sql) {
        m->step = M_DONE;
        return;
    }
    event_free(m->retry);
    pr_free(m);
}
