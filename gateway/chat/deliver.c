/*
 * deliver.c - what comes from Redis (envelopes: C room events, M1 stored
 * messages, U1 user packets, J1/K1 membership, A1 acks, R1 sync and replay
 * replies) and writing it to local sockets: one blob per message, with this
 * worker's recovery offset, and one seq filter (gc__write_stored).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gc.h"

/* ---- packets with a recovery offset ---- */

/* Frames the packet once; the same blob goes to every local recipient. */
static gw_blob *packet_blob(pr_view packet)
{
    return gw_blob_sio(packet);
}

/* The packet with vec appended as its last argument; unchanged when it does
 * not look like an event (storage's packets always do). Composed in the
 * worker's scratch (cw->relay): the blob is the only allocation. */
static gw_blob *offset_blob(gc_worker *cw, pr_view packet, const uint64_t *vec)
{
    pr_buf *out = &cw->relay;
    pr_buf_reset(out);
    if (vec && chat_offset_packet(out, packet, vec, cw->nshards) == 0)
        return packet_blob(pr_buf_view(out));
    CM_WARN_RATELIMITED("event=no_offset worker=%d len=%zu", cw->index, packet.len);
    return packet_blob(packet);
}

int gc__write_stored(gc_worker *cw, gc_sock *cs, gc_member *m, gw_blob *b, int64_t seq, int own)
{
    /* a batch published again (storage died between its PUBLISH and its
     * XACK), or a sync or replay that overlaps live traffic: never twice */
    if (seq <= m->last_seq)
        return 0;
    m->last_seq = seq;
    gw_socket_send_blob(cs->sock, b);
    if (!own)
        gc__deliver_receipts(cw, cs, m, seq);
    return 1;
}

static void joined_room_subscribed(cm_redis *r, int ok, void *arg);

static int item_cmp(const void *pa, const void *pb)
{
    const chat_replay_item *a = pa, *b = pb;
    if (a->shard != b->shard)
        return a->shard < b->shard ? -1 : 1;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/*
 * Writes the items of an R1 reply in (shard, position) order (a replay comes
 * so; a sync comes by room and seq, and a room's seq order is its position
 * order, so sorting keeps every room's order). Each item carries base raised
 * by what was written so far: once a client has read an item it has every
 * message of its rooms up to that vector, even if the rest never reaches it.
 * base: the replay's, the positions when a fresh session started (what
 * is above them came live or in this reply), or the worker's live vector
 * for a sync on a socket already live.
 */
static void write_items(gc_worker *cw, gc_sock *cs, pr_view it, const uint64_t *base)
{
    uint64_t *cur = pr_calloc(cw->nshards, sizeof *cur);
    if (base)
        memcpy(cur, base, cw->nshards * sizeof *cur);
    size_t n = 0, cap = 0;
    chat_replay_item *items = NULL, item;
    int rc;
    while ((rc = chat_renv_next(&it, &item)) == 1) {
        if (item.shard >= cw->nshards) {
            CM_WARN_RATELIMITED("event=bad_replay_item worker=%d shard=%u", cw->index,
                                item.shard);
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            items = pr_realloc(items, cap * sizeof *items);
        }
        items[n++] = item;
    }
    if (rc < 0)
        CM_WARN_RATELIMITED("event=bad_replay worker=%d sid=%s", cw->index, cs->sid);
    if (n > 1)
        qsort(items, n, sizeof *items, item_cmp);
    for (size_t i = 0; i < n; i++) {
        const chat_replay_item *x = &items[i];
        if ((uint64_t)x->pos > cur[x->shard])
            cur[x->shard] = (uint64_t)x->pos;
        char room[CHAT_ID_MAX + 1];
        memcpy(room, x->room.ptr, x->room.len);
        room[x->room.len] = '\0';
        gw_blob *b = offset_blob(cw, x->packet, cur);
        gc_member *m = gc__membership(cs, room);
        if (!m) {
            /* storage knows the user is a member even if the cache did not;
             * what the room publishes before its subscription is confirmed
             * needs a sync too */
            m = gc__room_join(cw, cs, room);
            gc__when_room_subscribed(cw, room, joined_room_subscribed, gc__ref_new(cw, cs));
        }
        gc__write_stored(cw, cs, m, b, x->seq, 0);
        gw_blob_unref(b);
    }
    gw_app_count(cw->w, GC_COUNT_DELIVERIES, n);
    pr_free(items);
    pr_free(cur);
}


/* ---- envelopes from Redis ---- */

static void deliver_room(gc_worker *cw, const chat_env *h, pr_view packet)
{
    gc_room *room = (gc_room *)gc__map_get(&cw->rooms, h->room.ptr, h->room.len);
    if (!room)
        return; /* our last member left while the message was in flight */
    gw_blob *b = packet_blob(packet);
    for (gc_member *m = room->members, *next; m; m = next) {
        next = m->rnext;
        gc_sock *cs = m->cs;
        if (h->except_user.len && cs->user && cs->user->e.len == h->except_user.len &&
            !memcmp(cs->user->e.key, h->except_user.ptr, h->except_user.len))
            continue;
        if (h->except_socket.len && pr_view_eq_cstr(h->except_socket, gw_socket_id(cs->sock)))
            continue;
        gw_socket_send_blob(cs->sock, b);
        gw_app_count(cw->w, GC_COUNT_DELIVERIES, 1);
    }
    gw_blob_unref(b);
}

static void deliver_all(gc_worker *cw, pr_view packet)
{
    gw_blob *b = packet_blob(packet);
    for (gc_sock *cs = cw->socks, *next; cs; cs = next) {
        next = cs->next;
        gw_socket_send_blob(cs->sock, b);
    }
    gw_blob_unref(b);
}

/* M1: a stored message. One blob, offset included, for every local member. */
static void on_stored(gc_worker *cw, pr_view msg)
{
    chat_menv h;
    pr_view packet;
    if (chat_menv_decode(msg, &h, &packet) != 0) {
        CM_WARN_RATELIMITED("event=bad_envelope kind=M worker=%d len=%zu", cw->index, msg.len);
        return;
    }
    int known_shard = h.shard < cw->nshards;
    if (!known_shard)
        CM_WARN_RATELIMITED("event=shard_out_of_range worker=%d shard=%u shards=%u "
                            "hint=--ingest-shards",
                            cw->index, h.shard, cw->nshards);
    else if ((uint64_t)h.pos > cw->pos[h.shard])
        cw->pos[h.shard] = (uint64_t)h.pos;
    gc_room *room = (gc_room *)gc__map_get(&cw->rooms, h.room.ptr, h.room.len);
    if (!room)
        return;
    gw_blob *b = offset_blob(cw, packet, known_shard ? cw->pos : NULL);
    for (gc_member *m = room->members, *next; m; m = next) {
        next = m->rnext;
        gc_sock *cs = m->cs;
        int own = cs->user && gc__view_is(h.sender, cs->user->e.key, cs->user->e.len);
        if (cs->phase != GC_LIVE) {
            gc__hold(cw, cs, b, room->e.key, h.seq, own);
            continue;
        }
        if (gc__write_stored(cw, cs, m, b, h.seq, own))
            gw_app_count(cw->w, GC_COUNT_DELIVERIES, 1);
    }
    gw_blob_unref(b);
}

static gc_user *find_user(gc_worker *cw, pr_view user)
{
    return (gc_user *)gc__map_get(&cw->users, user.ptr, user.len);
}

/* U1: packets for every local socket of a user, in their order (one
 * envelope per sender and batch: its delivered and seen news). A malformed
 * envelope is dropped whole, before anything is written. */
static int user_packets_ok(pr_view it)
{
    pr_view packet;
    int rc;
    while ((rc = chat_uenv_next(&it, &packet)) == 1)
        ;
    return rc;
}

static void on_user_packet(gc_worker *cw, pr_view msg)
{
    pr_view user, it, packet;
    if (chat_uenv_begin_decode(msg, &user, &it) != 0 || user_packets_ok(it) != 0) {
        CM_WARN_RATELIMITED("event=bad_envelope kind=U worker=%d len=%zu", cw->index, msg.len);
        return;
    }
    gc_user *u = find_user(cw, user);
    if (!u)
        return;
    while (chat_uenv_next(&it, &packet) == 1) {
        gw_blob *b = packet_blob(packet);
        for (gc_sock *cs = u->socks; cs; cs = cs->unext)
            gw_socket_send_blob(cs->sock, b); /* refused while a CONNECT is pending */
        gw_blob_unref(b);
    }
}

/* A room that J1 (or a sync) added is subscribed now; what it published
 * before (its first message, typically: J1 and M1 race) comes by a sync
 * asked after this confirmation, held live messages deduplicated by seq as
 * on connect. A socket that is not live (its connect-time sync or another
 * room's is in flight, and may have been read before that message was
 * stored) or whose generation moved on meanwhile still owes that sync:
 * going live (gc__set_phase) asks it. */
static void joined_room_subscribed(cm_redis *r, int ok, void *arg)
{
    (void)r;
    gc_ref *ref = arg;
    gc_worker *cw = ref->cw;
    gc_sock *cs = gc__ref_take_session(ref);
    if (!ok || !cs)
        return; /* link down: every session is dropped and recovers */
    if (cs->phase != GC_LIVE)
        cs->resync = 1;
    else if (gc__request(cw, cs, "sync", NULL) != 0)
        CM_WARN_RATELIMITED("event=sync_failed worker=%d sid=%s", cw->index, cs->sid);
}

/* J1/K1: membership changes apply to the user's local sockets at once. */
static void on_membership(gc_worker *cw, pr_view msg)
{
    char kind;
    pr_view room, user;
    if (chat_jenv_decode(msg, &kind, &room, &user) != 0) {
        CM_WARN_RATELIMITED("event=bad_envelope kind=J worker=%d len=%zu", cw->index, msg.len);
        return;
    }
    gc_user *u = find_user(cw, user);
    if (!u)
        return;
    char id[CHAT_ID_MAX + 1];
    memcpy(id, room.ptr, room.len);
    id[room.len] = '\0';
    for (gc_sock *cs = u->socks; cs; cs = cs->unext) {
        if (kind != 'J') {
            gc__room_leave(cw, cs, id);
        } else if (!gc__membership(cs, id)) {
            gc__room_join(cw, cs, id); /* whatever the phase: see joined_room_subscribed */
            gc__when_room_subscribed(cw, id, joined_room_subscribed, gc__ref_new(cw, cs));
        }
    }
}

/*
 * A1: acks of messages this worker's sockets sent, after storage's COMMIT.
 * An ack the client waits for gets storage's text as it came, unparsed, as
 * M1's packets are relayed unparsed: storage wrote it (one line, checked by
 * chat_aenv_add) with proto's ack objects, and whoever can publish on our
 * channel can publish any M1 too. Only its shape is checked ("{...}"), so a
 * storage gone wrong cannot put a non-object in the client's ack. Only an
 * ack nobody waits for (id -1, rare) is parsed: its error, if any, becomes
 * a chatError event.
 */
static void on_acks(gc_worker *cw, pr_view msg)
{
    pr_view it, sid, json;
    int64_t id;
    if (chat_aenv_begin_decode(msg, &it) != 0)
        return;
    int rc;
    while ((rc = chat_aenv_next(&it, &sid, &id, &json)) == 1) {
        if (sid.len > GW_SID_LEN)
            continue;
        if (gc__join_answered(cw, sid, id, json))
            continue;
        char s[GW_SID_LEN + 1];
        memcpy(s, sid.ptr, sid.len);
        s[sid.len] = '\0';
        gw_socket *sock = gw_socket_find(cw->w, s, "/");
        if (!sock)
            continue; /* gone: the client's ack callback died with it */
        if (json.len < 2 || json.ptr[0] != '{' || json.ptr[json.len - 1] != '}') {
            CM_WARN_RATELIMITED("event=bad_ack worker=%d", cw->index);
            continue;
        }
        if (id >= 0) {
            gc__ack(sock, id, json);
            continue;
        }
        json_t *arg = json_loadb(json.ptr, json.len, 0, NULL);
        const char *error = json_string_value(json_object_get(arg, "error"));
        if (error) /* no callback: the error as a chatError event */
            gc__reply_error(sock, "sendMessage", -1, error);
        json_decref(arg);
    }
    if (rc < 0)
        CM_WARN_RATELIMITED("event=bad_envelope kind=A worker=%d len=%zu", cw->index, msg.len);
}

/* R1: storage's answer to a sync or replay request. */
static void on_replay_reply(gc_worker *cw, pr_view msg)
{
    pr_view req, status, it;
    if (chat_renv_begin_decode(msg, &req, &status, &it) != 0) {
        CM_WARN_RATELIMITED("event=bad_envelope kind=R worker=%d len=%zu", cw->index, msg.len);
        return;
    }
    const char *dot = memchr(req.ptr, '.', req.len);
    if (!dot || (size_t)(dot - req.ptr) > GW_SID_LEN)
        return;
    char sid[GW_SID_LEN + 1];
    memcpy(sid, req.ptr, (size_t)(dot - req.ptr));
    sid[dot - req.ptr] = '\0';
    gc_sock *cs = gc__sock_by_sid(cw, sid);
    char want[REQ_ID_MAX];
    if (cs)
        gc__req_id(want, cs, cs->gen);
    if (!cs || cs->phase != GC_CATCHUP || !gc__view_is(req, want, strlen(want))) {
        CM_DEBUG("event=late_replay worker=%d sid=%s", cw->index, sid);
        return; /* timed out, or the socket is gone */
    }
    int ok = pr_view_eq_cstr(status, "ok");
    if (cs->recovering) {
        if (!ok) {
            CM_INFO("event=recovery_refused worker=%d sid=%s status=%.*s", cw->index, cs->sid,
                    (int)status.len, status.ptr);
            gc__go_fresh(cw, cs, 1);
            return;
        }
        gc__accept(cs); /* the same pid: socket.recovered */
        gc__pexpire_record(cw, cs);
        write_items(cw, cs, it, cs->rec);
        CM_DEBUG("event=session_recovered worker=%d sid=%s", cw->index, cs->sid);
    } else if (ok) {
        /* a sync on a live socket (a room added by J1) starts from what the
         * worker's live offsets already claim: never below them */
        write_items(cw, cs, it, cs->fresh ? cs->fresh : cw->pos);
    } else {
        CM_INFO("event=sync_incomplete worker=%d sid=%s status=%.*s", cw->index, cs->sid,
                (int)status.len, status.ptr);
    }
    gc__set_phase(cw, cs, GC_LIVE);
}

void gc__on_redis_message(cm_redis *r, pr_view channel, pr_view message, void *arg)
{
    (void)r;
    (void)channel;
    gc_worker *cw = arg;
    gw_app_count(cw->w, GC_COUNT_EVENTS_IN, 1);
    char kind = chat_env_kind(message);
    if (kind != 'C' && !cw->storage)
        kind = 0;
    switch (kind) {
    case 'C': {
        chat_env h;
        pr_view packet;
        if (chat_env_decode(message, &h, &packet) != 0)
            break;
        if (pr_view_eq_cstr(h.room, CHAT_ROOM_ALL))
            deliver_all(cw, packet);
        else
            deliver_room(cw, &h, packet);
        return;
    }
    case 'M':
        on_stored(cw, message);
        return;
    case 'U':
        on_user_packet(cw, message);
        return;
    case 'J':
    case 'K':
        on_membership(cw, message);
        return;
    case 'A':
        on_acks(cw, message);
        return;
    case 'R':
        on_replay_reply(cw, message);
        return;
    default:
        break;
    }
    CM_WARN_RATELIMITED("event=bad_envelope worker=%d len=%zu", cw->index, message.len);
}

