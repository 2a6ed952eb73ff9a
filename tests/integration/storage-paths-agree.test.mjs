// chat-storage decides a batch in one of two ways that must give the same
// results (docs/storage.md "Storage's batch" and "The room cache", decision
// 51): in the shard owner's memory (storage/ingest/fast.c, the default), or
// through the SQL functions alone (chat_batch, `--room-cache 0`). This test
// runs one seeded, randomized script of users' actions on two independent
// stacks, one of each kind, and compares everything users and the database
// hold: the acks, the messages, the members' watermarks, the watermark log
// and every event each user's sockets received.
//
// The script is generated up front from the seed (CHAT_PATHS_SEED, default
// below; CHAT_PATHS_ACTIONS sets its length), so both stacks run exactly the
// same actions. They run strictly one at a time: each action's ack is back
// and its effects are committed (every online member has had the room's
// messages delivered, seen where the room is open; a markSeen's receipt is
// applied) before the next starts, so batching cannot differ between the stacks and
// any difference is a difference of the ingest paths. The default seed, 32
// (also 6, 10, 36), found one, now fixed: a member removed from the
// database behind the gateways' back who retries a stored message was
// answered with the original ack by chat_batch (duplicates are decided
// before membership) and with "not a member" by the room cache (a reused
// clientMsgId likewise). Real Redis, PostgreSQL,
// one chat-storage and one gateway behind HAProxy per stack.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { closeAllClients, closeClient, emitAck } from './lib/client.mjs';
import { httpRequest, sleep, until } from './lib/harness.mjs';
import { api, PG_BIN_DIR, startCluster } from './lib/stack.mjs';
import { connectStored, createGroup } from './lib/storage-chat.mjs';

const SEED = Number(process.env.CHAT_PATHS_SEED ?? 32);
const ACTIONS = Number(process.env.CHAT_PATHS_ACTIONS ?? 200);
const WAIT = 10000; // for one effect that crosses storage (a batch, a commit)
// After the last event of an action reached Redis, how long its delivery to
// a socket is given before that socket is closed (events are live only: one
// still in flight at the close would be lost on one stack and not the other).
const QUIET = 250;

const STACKS = [
  { name: 'room cache', storageArgs: [] },
  { name: 'sql only', storageArgs: ['--room-cache', '0'] },
];

after(() => closeAllClients());

// ------------------------------------------------------------ the script

/** mulberry32: a small seeded generator of floats in [0, 1). */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// The same ids on both stacks (each has its own Redis and PostgreSQL), so
// direct rooms, whose id is derived from their two members, agree too.
const USERS = ['Alice', 'Bob', 'Carol', 'Dave', 'Erin'].map((name) => ({ id: `${name.toLowerCase()}-pa`, name }));
// A group id in the API's format that no stack ever creates.
const NO_ROOM = 'g_AAAAAAAAAAAAAAAAAAAAAA';
const WORDS = ['hi', 'ok', 'lunch?', 'see you', 'ça va', 'done', '👍', 'later', 'why not', 'tomorrow'];
const dmLabel = (a, b) => `D:${[a, b].sort().join('+')}`;

/**
 * The actions for `seed`, generated against a model of what the client side
 * knows (who is online, who is a member, which rooms are open, what was
 * sent), never against a stack's answers, so both stacks get the same list.
 * An action: {op, ...}; rooms are labels (G1.. for groups in creation
 * order, D:a+b for direct rooms), mapped to each stack's ids when run.
 */
function makeScript(seed, count) {
  const r = rng(seed);
  const pick = (arr) => arr[Math.floor(r() * arr.length)];
  const chance = (p) => r() < p;
  const ids = USERS.map((u) => u.id);
  const online = new Set();
  const open = new Map(ids.map((u) => [u, new Set()]));
  // groups: members as stored (room_members); gw: as the gateways believe
  // (they differ for a member removed in the database behind their back)
  const groups = [];
  const dms = [];
  const sent = []; // {user, room, cmid, text} of messages that should be stored
  const script = [];
  let cmidN = 0;
  let ghosts = 0;

  const roomOf = (label) => groups.find((g) => g.label === label) ?? dms.find((d) => d.label === label);
  const groupsOf = (u) => groups.filter((g) => g.gw.has(u));
  const dmsOf = (u) => dms.filter((d) => d.pair.includes(u));
  const isMember = (u, room) => (room.pair ? room.exists && room.pair.includes(u) : room.members.has(u));

  // setup: four users online (Erin half the time), three groups, three direct pairs
  for (const u of ids) {
    if (u !== ids[4] || chance(0.5)) {
      script.push({ op: 'connect', user: u });
      online.add(u);
    }
  }
  for (let i = 1; i <= 3; i++) {
    const owner = pick(ids);
    const others = ids.filter((u) => u !== owner && chance(0.6));
    if (others.length === 0) others.push(pick(ids.filter((u) => u !== owner)));
    const label = `G${i}`;
    script.push({ op: 'createGroup', room: label, owner, members: others });
    groups.push({ label, members: new Set([owner, ...others]), gw: new Set([owner, ...others]), count: 0 });
  }
  const pairs = [];
  for (let a = 0; a < ids.length; a++) for (let b = a + 1; b < ids.length; b++) pairs.push([ids[a], ids[b]]);
  while (dms.length < 3) {
    const p = pairs.splice(Math.floor(r() * pairs.length), 1)[0];
    dms.push({ label: dmLabel(...p), pair: p, exists: false, count: 0 });
  }

  // a room to write in: groups weigh more than direct rooms, G1 most (a
  // long room, so that moves reach behind the room cache's ring of senders)
  function roomFor(u) {
    const gs = groupsOf(u);
    const g1 = gs.find((g) => g.label === 'G1');
    if (g1 && chance(0.35)) return g1;
    const all = [...gs, ...gs, ...dmsOf(u)];
    return all.length > 0 ? pick(all) : null;
  }

  function send(u, room, kind) {
    const a = { op: 'send', user: u, room: room.label, kind: kind === 'send' ? 'new' : kind };
    if (room.pair) {
      a.peer = room.pair.find((x) => x !== u);
      a.via = !room.exists || chance(0.4) ? 'target' : 'roomId';
    } else {
      a.via = 'roomId';
    }
    const mine = sent.filter((s) => s.user === u);
    const inRoom = mine.filter((s) => s.room === room.label);
    if (kind === 'send' && inRoom.length > 0 && chance(0.12)) {
      const s = pick(inRoom);
      Object.assign(a, { kind: 'retry', cmid: s.cmid, text: s.text });
    } else if (kind === 'send' && inRoom.length > 0 && chance(0.06)) {
      const s = pick(inRoom);
      Object.assign(a, { kind: 'reuse', cmid: s.cmid, text: `${s.text} (edited)` });
    } else if (kind === 'send' && chance(0.06)) {
      // a clientMsgId this sender used in another room only: a new message
      const used = new Set(inRoom.map((s) => s.cmid));
      const other = mine.filter((s) => s.room !== room.label && !used.has(s.cmid));
      if (other.length > 0) Object.assign(a, { kind: 'other-room', cmid: pick(other).cmid, text: `again ${pick(WORDS)}` });
    }
    if (!a.text) {
      a.text = `${pick(WORDS)} ${script.length}`;
      if (kind !== 'send' || chance(0.92)) a.cmid = `c${++cmidN}`; // else none: no idempotency
    }
    // what the stacks should store: a new message of a member (the first
    // message of a direct room creates it and its two members)
    const stored = kind === 'send' && a.kind !== 'retry' && a.kind !== 'reuse' && (isMember(u, room) || (room.pair && !room.exists));
    if (stored) {
      room.count++;
      if (room.pair) room.exists = true;
      if (a.cmid) sent.push({ user: u, room: room.label, cmid: a.cmid, text: a.text });
    }
    script.push(a);
  }

  while (script.length < count) {
    const on = [...online];
    const off = ids.filter((u) => !online.has(u));
    const choices = [];
    const add = (w, f) => choices.push([w, f]);
    add(48, () => {
      const u = pick(on);
      const room = roomFor(u);
      if (room) send(u, room, 'send');
    });
    add(9, () => {
      // open a room as the clients do: joinRoom, joinChat for a direct room
      const u = pick(on);
      const rooms = [...groupsOf(u).filter((g) => g.members.has(u)), ...dmsOf(u)];
      if (rooms.length === 0) return;
      const room = pick(rooms);
      script.push(room.pair ? { op: 'open', user: u, room: room.label, peer: room.pair.find((x) => x !== u) } : { op: 'open', user: u, room: room.label });
      if (room.pair) room.exists = true;
      open.get(u).add(room.label);
    });
    add(4, () => {
      const u = pick(on);
      if (open.get(u).size === 0) return;
      const label = pick([...open.get(u)]);
      const room = roomOf(label);
      script.push({ op: 'leave', user: u, room: label, peer: room.pair?.find((x) => x !== u) });
      open.get(u).delete(label);
    });
    add(10, () => {
      const u = pick(on);
      const rooms = [...groupsOf(u).filter((g) => g.members.has(u)), ...dmsOf(u).filter((d) => d.exists)];
      if (rooms.length === 0) return;
      const room = pick(rooms);
      // everything, or up to a seq (some past the room's last)
      const seq = chance(0.35) ? undefined : Math.floor(r() * (room.count + 3));
      script.push({ op: 'markSeen', user: u, room: room.label, seq });
    });
    if (on.length > 2) {
      add(5, () => {
        const u = pick(on);
        script.push({ op: 'disconnect', user: u });
        online.delete(u);
        open.get(u).clear();
      });
    }
    if (off.length > 0) {
      add(6, () => {
        const u = pick(off);
        script.push({ op: 'connect', user: u });
        online.add(u);
      });
    }
    add(5, () => {
      const g = pick(groups);
      const outside = ids.filter((u) => !g.members.has(u));
      if (outside.length === 0) return;
      const u = pick(outside);
      // now and then by someone who is not a member: 403, nothing changes
      const byOutsider = chance(0.15) && outside.length > 1;
      const actor = byOutsider ? pick(outside.filter((x) => x !== u)) : pick([...g.members]);
      script.push({ op: 'add', actor, user: u, room: g.label, inGateways: g.gw.has(u) });
      if (!byOutsider) {
        g.members.add(u);
        g.gw.add(u);
      }
    });
    add(4, () => {
      const g = pick(groups);
      if (g.members.size <= 2) return;
      const u = pick([...g.members]);
      const actor = chance(0.3) ? u : pick([...g.members]); // leaving, or removed by another
      script.push({ op: 'remove', actor, user: u, room: g.label });
      g.members.delete(u);
      g.gw.delete(u);
      open.get(u).delete(g.label);
    });
    add(4, () => {
      // a non-member writes to a group (or to a room that does not exist)
      const u = pick(on);
      const outside = groups.filter((g) => !g.gw.has(u));
      if (outside.length === 0 || chance(0.2)) {
        script.push({ op: 'send', user: u, room: null, kind: 'nonmember', via: 'roomId', cmid: `c${++cmidN}`, text: 'anyone?' });
        return;
      }
      send(u, pick(outside), 'nonmember');
    });
    if (ghosts < 2) {
      add(1.5, () => {
        // a member removed in the database behind the gateways' back (its
        // room closed, so what its socket does stays what the model says):
        // only the ingest can refuse its sends and receipts
        const g = pick(groups);
        const cand = [...g.members].filter((u) => !open.get(u).has(g.label));
        if (g.members.size <= 2 || cand.length === 0) return;
        const u = pick(cand);
        script.push({ op: 'ghost', user: u, room: g.label });
        g.members.delete(u);
        ghosts++;
      });
    }
    const total = choices.reduce((s, [w]) => s + w, 0);
    let x = r() * total;
    for (const [w, f] of choices) {
      x -= w;
      if (x < 0) {
        f();
        break;
      }
    }
  }
  return script;
}

// ------------------------------------------------------------ PostgreSQL

/**
 * One psql process kept open on `url`, so polling the tables costs a
 * round trip rather than a process start. query(sql) resolves to the
 * unaligned, tuples-only output; an error ends psql (ON_ERROR_STOP), so
 * that query and every later one reject.
 */
class PgSession {
  constructor(url) {
    const bin = PG_BIN_DIR ? path.join(PG_BIN_DIR, 'psql') : 'psql';
    this.proc = spawn(bin, ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', url], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.out = '';
    this.err = '';
    this.waiter = null;
    this.chain = Promise.resolve();
    this.n = 0;
    this.proc.stdout.on('data', (c) => {
      this.out += c;
      this.waiter?.();
    });
    this.proc.stderr.on('data', (c) => {
      this.err += c;
    });
    this.proc.on('exit', () => this.waiter?.());
  }

  query(sql) {
    const run = async () => {
      const mark = `__end_${++this.n}__`;
      this.out = '';
      this.err = '';
      this.proc.stdin.write(`${sql};\n\\echo ${mark}\n`);
      const deadline = Date.now() + 30000;
      while (!this.out.includes(`${mark}\n`)) {
        if (this.proc.exitCode !== null) throw new Error(`psql exited: ${this.err}`);
        if (Date.now() > deadline) throw new Error(`psql: no answer to ${sql}`);
        await new Promise((resolve) => {
          this.waiter = resolve;
          setTimeout(resolve, 100);
        });
      }
      if (this.err) throw new Error(`psql ${JSON.stringify(sql)}: ${this.err}`);
      return this.out.slice(0, this.out.indexOf(`${mark}\n`)).replace(/\n$/, '');
    };
    const p = this.chain.then(run);
    this.chain = p.catch(() => {});
    return p;
  }

  async json(sql) {
    return JSON.parse(await this.query(`SELECT coalesce(json_agg(x), '[]') FROM (${sql}) x`));
  }

  close() {
    this.proc.stdin.end();
    this.proc.kill();
  }
}

const q = (x) => `'${String(x).replaceAll("'", "''")}'`;
const enc = encodeURIComponent;

// ------------------------------------------------------------ a stack running the script

class Runner {
  constructor(cfg, cl, tokens) {
    this.name = cfg.name;
    this.cl = cl;
    this.tokens = tokens;
    this.pg = new PgSession(cl.pg.url);
    this.sockets = new Map(); // user → the socket now
    this.history = new Map(USERS.map((u) => [u.id, []])); // user → every socket it had, in order
    this.open = new Map(USERS.map((u) => [u.id, new Set()])); // user → room ids open on its socket
    this.rooms = new Map(); // label → this stack's room id
    this.results = []; // per action, what came back (raw)
  }

  user(id) {
    return { id, name: USERS.find((u) => u.id === id).name, token: this.tokens.get(id) };
  }

  roomId(label) {
    return label === null ? NO_ROOM : this.rooms.get(label);
  }

  /** Run action `a` (number `i`) and wait until its effects are committed. */
  async run(i, a) {
    const sock = this.sockets.get(a.user);
    let res;
    let markSeen = null; // {room, user, seen}: the seen watermark a markSeen must reach
    switch (a.op) {
      case 'connect': {
        const s = await connectStored(this.cl.url, this.user(a.user), { transports: ['websocket'] });
        this.sockets.set(a.user, s);
        this.history.get(a.user).push(s);
        res = { connected: s.connected };
        break;
      }
      case 'disconnect': {
        await sleep(QUIET);
        closeClient(sock);
        this.sockets.delete(a.user);
        this.open.get(a.user).clear();
        // until the gateway has dropped the socket, it might still write it
        // (and have it delivered) the next action's message
        await sleep(QUIET);
        res = { disconnected: true };
        break;
      }
      case 'createGroup': {
        const g = await createGroup(this.cl.apiUrl, this.user(a.owner), a.room, a.members);
        this.rooms.set(a.room, g.roomId);
        for (const u of [a.owner, ...a.members]) await this.sockets.get(u)?.inbox.wait('roomAdded', { roomId: g.roomId }, WAIT);
        res = { status: 201 };
        break;
      }
      case 'send': {
        const payload = { text: a.text, ...(a.cmid ? { clientMsgId: a.cmid } : {}) };
        if (a.via === 'target') payload.targetUserId = a.peer;
        else payload.roomId = this.roomId(a.room);
        if (!payload.targetUserId && !payload.roomId) {
          res = { unresolved: a.room }; // a direct room this stack never created
          break;
        }
        [res] = await emitAck(sock, 'sendMessage', [payload], 15000);
        if (res?.roomId && a.room && !this.rooms.has(a.room)) this.rooms.set(a.room, res.roomId);
        break;
      }
      case 'open': {
        res = a.peer
          ? (await emitAck(sock, 'joinChat', [{ targetUserId: a.peer }], 15000))[0]
          : (await emitAck(sock, 'joinRoom', [{ roomId: this.roomId(a.room) }], 15000))[0];
        if (res?.roomId) {
          if (!this.rooms.has(a.room)) this.rooms.set(a.room, res.roomId);
          this.open.get(a.user).add(res.roomId);
        }
        break;
      }
      case 'leave': {
        const id = this.roomId(a.room);
        res = a.peer
          ? (await emitAck(sock, 'leaveChat', [{ targetUserId: a.peer }], 15000))[0]
          : (await emitAck(sock, 'leaveRoom', [{ roomId: id }], 15000))[0];
        this.open.get(a.user).delete(id);
        break;
      }
      case 'markSeen': {
        const id = this.roomId(a.room);
        const [row] = await this.pg.json(
          `SELECT m.seen_seq AS seen, r.last_seq AS last FROM room_members m JOIN rooms r ON r.id = m.room_id
            WHERE m.room_id = ${q(id)} AND m.user_id = ${q(a.user)}`,
        );
        if (row) markSeen = { room: id, user: a.user, seen: Math.max(row.seen, Math.min(a.seq ?? row.last, row.last)) };
        // Its receipt is coalesced by the gateway (up to 50 ms) and clamped
        // when storage applies it: "everything" (no seq) or a seq past the
        // room's last that moves nothing now would cover the next action's
        // message if it reached storage after it, on one stack and not the
        // other. So, whatever it moves: wait until it is applied (storage
        // counts the receipt lines it applied; other receipts still in
        // flight, that move nothing, are let through first).
        const applied = () => this.metric('chat_storage_receipts_applied_total');
        await this.receiptsIdle();
        const before = await applied();
        res = (await emitAck(sock, 'markSeen', [{ roomId: id, ...(a.seq === undefined ? {} : { seq: a.seq }) }], 15000))[0];
        if (res && !res.error && a.seq !== 0) { // (seq 0: the gateway has nothing to send)
          await until(async () => (await applied()) > before, WAIT, `stack ${this.name}: the receipt of action ${i} ${JSON.stringify(a)} applied`);
        }
        break;
      }
      case 'add': {
        const id = this.roomId(a.room);
        const target = this.sockets.get(a.user);
        const res0 = await api(this.cl.apiUrl, this.tokens.get(a.actor), 'POST', `/api/rooms/${enc(id)}/members`, { userId: a.user });
        res = { status: res0.status, body: res0.json };
        // a new member's socket joins the room (roomAdded); one removed in
        // the database behind the gateways' back never left it
        if (res0.status === 201 && target && !a.inGateways) await target.inbox.wait('roomAdded', { roomId: id }, WAIT);
        break;
      }
      case 'remove': {
        const id = this.roomId(a.room);
        const res0 = await api(this.cl.apiUrl, this.tokens.get(a.actor), 'DELETE', `/api/rooms/${enc(id)}/members/${enc(a.user)}`);
        res = { status: res0.status, body: res0.json };
        const target = this.sockets.get(a.user);
        if (res0.status === 204 && target) await target.inbox.wait('roomRemoved', { roomId: id }, WAIT);
        this.open.get(a.user).delete(id);
        break;
      }
      case 'ghost': {
        const id = this.roomId(a.room);
        res = { deleted: await this.pg.query(`WITH d AS (DELETE FROM room_members WHERE room_id = ${q(id)} AND user_id = ${q(a.user)} RETURNING 1) SELECT count(*) FROM d`) };
        break;
      }
      default:
        throw new Error(`unknown action ${a.op}`);
    }
    this.results[i] = res;
    await this.settle(i, a, markSeen);
    // for the report of a difference: the action each event came during
    for (const socks of this.history.values()) {
      for (const s of socks) for (const item of s.inbox.items) item.action ??= i;
    }
  }

  /**
   * Wait until what action `i` set moving is committed: every member with a
   * socket has been delivered everything in each of its rooms (and has seen
   * it where the room is open), and a markSeen's move is made. Nothing else
   * moves a watermark, so after this the next action's batch cannot meet
   * one of this action's receipts.
   */
  async settle(i, a, markSeen) {
    const deadline = Date.now() + WAIT;
    for (;;) {
      const rows = await this.pg.json(
        `SELECT m.room_id AS room, m.user_id AS user, m.delivered_seq AS d, m.seen_seq AS s, r.last_seq AS last
           FROM room_members m JOIN rooms r ON r.id = m.room_id`,
      );
      const behind = rows.filter((m) => {
        if (markSeen && m.room === markSeen.room && m.user === markSeen.user && m.s < markSeen.seen) return true;
        if (!this.sockets.has(m.user)) return false;
        return m.d < m.last || (this.open.get(m.user).has(m.room) && m.s < m.last);
      });
      if (behind.length === 0) return;
      if (Date.now() > deadline) {
        throw new Error(
          `stack ${this.name}, seed ${SEED}, action ${i} ${JSON.stringify(a)}: watermarks still behind after ${WAIT} ms` +
            ` (markSeen wants ${JSON.stringify(markSeen)}): ${JSON.stringify(behind)}`,
        );
      }
      await sleep(15);
    }
  }

  /** Resolve once storage has applied no receipt line for a while. */
  async receiptsIdle(ms = 150) {
    let last = await this.metric('chat_storage_receipts_applied_total');
    let since = Date.now();
    const deadline = since + WAIT;
    while (Date.now() - since < ms) {
      if (Date.now() > deadline) throw new Error(`stack ${this.name}: storage kept applying receipts for ${WAIT} ms`);
      await sleep(30);
      const now = await this.metric('chat_storage_receipts_applied_total');
      if (now !== last) [last, since] = [now, Date.now()];
    }
  }

  async metric(name) {
    const res = await httpRequest(`${this.cl.storage[0].url}/metrics`);
    const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(res.text);
    assert.ok(m, `no ${name} in /metrics`);
    return Number(m[1]);
  }

  /** This stack's results with its own ids replaced by labels. */
  async collect() {
    const label = new Map([...this.rooms].map(([l, id]) => [id, l]));
    label.set(NO_ROOM, 'NO_ROOM');
    // direct rooms a stack created that the script never learned the id of
    for (const d of await this.pg.json(`SELECT id, (SELECT string_agg(user_id, '+' ORDER BY user_id) FROM room_members WHERE room_id = r.id) AS pair FROM rooms r WHERE kind = 'dm'`)) {
      if (!label.has(d.id)) label.set(d.id, `D:${d.pair}`);
    }
    const L = (id) => label.get(id) ?? `?${id}`;
    const byLabelSeq = (x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] - y[1]);

    const msgs = await this.pg.json('SELECT id, room_id, seq, sender_id, client_msg_id, first_name, last_name, body FROM messages');
    // message ids come from a sequence that a batch refused by the room
    // cache's checks (and ON CONFLICT) also draws from: they differ by
    // design, so each is named by its (room, seq)
    const msgName = new Map(msgs.map((m) => [String(m.id), `${L(m.room_id)}#${m.seq}`]));
    const messages = msgs
      .map((m) => [L(m.room_id), m.seq, m.sender_id, m.client_msg_id, m.first_name, m.last_name, m.body])
      .sort(byLabelSeq);
    // times (joined_at, created_at, at) are each stack's clock: left out
    const rooms = (await this.pg.json('SELECT id, kind, name, created_by, last_seq FROM rooms'))
      .map((x) => [L(x.id), x.kind, x.name, x.created_by, x.last_seq])
      .sort(byLabelSeq);
    const members = (await this.pg.json('SELECT room_id, user_id, delivered_seq, seen_seq FROM room_members'))
      .map((x) => [L(x.room_id), x.user_id, x.delivered_seq, x.seen_seq])
      .sort((x, y) => byLabelSeq(x, y) || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0));
    const key = (x) => JSON.stringify(x);
    const watermarks = (await this.pg.json('SELECT room_id, user_id, kind, seq FROM watermarks'))
      .map((x) => [L(x.room_id), x.user_id, x.kind, x.seq])
      .sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0));

    // what came back for each action: ids mapped, times left out
    const mapAck = (res) => {
      if (!res || typeof res !== 'object') return res;
      const out = { ...res };
      if ('createdAt' in out) out.createdAt = typeof out.createdAt; // the stack's clock
      if ('roomId' in out) out.roomId = L(out.roomId);
      if ('id' in out) out.id = msgName.get(String(out.id)) ?? `?unknown message ${out.id}`;
      if (out.body && typeof out.body === 'object') out.body = mapAck(out.body);
      return out;
    };
    const acks = this.results.map(mapAck);

    // each user's events over all its sockets, in the order received
    const events = {};
    for (const [u, socks] of this.history) {
      const items = socks.flatMap((s) => s.inbox.items);
      events[u] = {
        // per room, in the order received. Across rooms the order is not
        // the paths' to keep: both put a batch's events in room id order,
        // and group ids (random) differ between the stacks, so do the
        // shards of their rooms, whose batches interleave by timing
        status: {},

        membership: items.filter((x) => x.event === 'roomAdded' || x.event === 'roomRemoved').map((x) => `${x.event} ${L(x.data.roomId)}`),
        // the order of live and synced messages is timing: compared as a set
        received: items
          .filter((x) => x.event === 'messageReceived')
          .map((x) => `${L(x.data.roomId)}#${x.data.seq} ${x.data.userId} ${x.data.clientMsgId ?? '-'} ${x.data.text}` +
            ` ${msgName.get(String(x.data.id)) === `${L(x.data.roomId)}#${x.data.seq}` ? '' : `id ${x.data.id}?`}`)
          .sort(),
      };
      for (const x of items.filter((y) => y.event === 'messageStatus')) {
        const room = L(x.data.roomId);
        events[u].status[room] ??= [];
        events[u].status[room].push({ data: { ...x.data, roomId: room }, action: x.action });
      }
    }
    return { acks, messages, rooms, members, watermarks, events };
  }
}

/**
 * Fail on the first item where `a` and `b` differ, with both and the item's
 * context, and the positions of the other differing items.
 */
function sameList(what, a, b, context = () => '') {
  const n = Math.max(a.length, b.length);
  const diff = [];
  for (let i = 0; i < n; i++) if (JSON.stringify(a[i]) !== JSON.stringify(b[i])) diff.push(i);
  if (diff.length === 0) return;
  const i = diff[0];
  assert.fail(
    `${what} differ (seed ${SEED}) at item ${i} of ${a.length} / ${b.length}${context(i)}\n` +
      `  ${STACKS[0].name}: ${JSON.stringify(a[i])}\n  ${STACKS[1].name}: ${JSON.stringify(b[i])}\n` +
      `  (${diff.length} items differ${diff.length > 1 ? `, the next at ${diff.slice(1, 6).join(', ')}${diff.length > 6 ? ', ...' : ''}` : ''})`,
  );
}

describe(`the room cache and the SQL path agree (seed ${SEED}, ${ACTIONS} actions)`, () => {
  const script = makeScript(SEED, ACTIONS);
  let runners = [];
  let got = null;

  before(async () => {
    const clusters = await Promise.all(
      STACKS.map((cfg) =>
        // One gateway with one worker: every receipt that one message
        // causes (its delivery to each online member, at the same moment)
        // then goes in one flush, so into one batch on both stacks. Over
        // several workers they race, and a status's aggregate would say
        // which came first: timing, not the ingest path.
        startCluster({
          gateways: 1,
          workers: 1,
          storage: true,
          pgFast: true, // nothing is killed here
          storageArgs: ['--rate-limit', '5000', '--rate-burst', '5000', ...cfg.storageArgs],
          args: ['--rate-limit', '5000', '--rate-burst', '5000'],
        }),
      ),
    );
    // one secret for both stacks: one token per user serves both
    const tokens = new Map(await Promise.all(USERS.map(async (u) => [u.id, await clusters[0].token(u.id, u.name)])));
    runners = STACKS.map((cfg, i) => new Runner(cfg, clusters[i], tokens));
  });
  after(async () => {
    for (const r of runners) r.pg.close();
    closeAllClients();
    await Promise.all(runners.map((r) => r.cl.stop()));
  });

  test('the same script runs on both stacks', { timeout: 150000 }, async (t) => {
    const ops = {};
    for (const a of script) {
      const k = a.op === 'send' ? `send ${a.kind}` : a.op;
      ops[k] = (ops[k] ?? 0) + 1;
    }
    t.diagnostic(`seed ${SEED}: ${script.length} actions: ${JSON.stringify(ops)}`);
    for (let i = 0; i < script.length; i++) {
      // both stacks at once, each strictly one action after the other
      await Promise.all(runners.map((r) => r.run(i, script[i])));
    }
    await sleep(2 * QUIET); // the last events reach their sockets
    got = await Promise.all(runners.map((r) => r.collect()));
    const answers = {};
    for (const res of got[0].acks) {
      const k = res?.error ?? (typeof res?.status === 'number' ? `HTTP ${res.status}` : res?.seq ? 'message' : res?.roomId ? 'room' : 'other');
      answers[k] = (answers[k] ?? 0) + 1;
    }
    t.diagnostic(`answers on the room cache's stack: ${JSON.stringify(answers)}`);
    // the comparison means something only if the room cache decided batches
    const fast = await Promise.all(runners.map((r) => r.metric('chat_storage_fast_batches_total')));
    const aborts = await runners[0].metric('chat_storage_fast_aborts_total');
    const refused = await runners[0].metric('chat_storage_fast_refused_total');
    t.diagnostic(`room cache: ${fast[0]} batches decided in memory, ${refused} refused before sending, ${aborts} failed a check`);
    assert.ok(fast[0] > 50, `the room cache decided only ${fast[0]} batches`);
    assert.equal(fast[1], 0, '--room-cache 0 decided batches in memory');
  });

  const describeAction = (i) => `, action ${JSON.stringify(script[i])}`;

  test('every action got the same answer', () => {
    assert.ok(got, 'the script did not run');
    sameList('answers', got[0].acks, got[1].acks, describeAction);
  });

  test('the same rooms and messages are stored', () => {
    assert.ok(got, 'the script did not run');
    sameList('rooms (label, kind, name, created_by, last_seq)', got[0].rooms, got[1].rooms);
    sameList('messages (room, seq, sender, clientMsgId, first_name, last_name, body)', got[0].messages, got[1].messages);
  });

  test('the same members with the same watermarks', () => {
    assert.ok(got, 'the script did not run');
    sameList('room_members (room, user, delivered_seq, seen_seq)', got[0].members, got[1].members);
  });

  test('the same watermark log', () => {
    assert.ok(got, 'the script did not run');
    sameList('watermarks (room, user, kind, seq)', got[0].watermarks, got[1].watermarks);
  });

  test('every user received the same events', () => {
    assert.ok(got, 'the script did not run');
    for (const u of USERS) {
      const [x, y] = got.map((g) => g.events[u.id]);
      const rooms = [...new Set([...Object.keys(x.status), ...Object.keys(y.status)])].sort();
      for (const room of rooms) {
        const [ex, ey] = [x.status[room] ?? [], y.status[room] ?? []];
        sameList(`messageStatus events of ${u.id} in ${room} (in order)`, ex.map((e) => e.data), ey.map((e) => e.data), (i) => {
          const near = (e) => e.slice(Math.max(0, i - 3), i + 4)
            .map((v, k) => `\n      [${Math.max(0, i - 3) + k}] during action ${v.action}: ${JSON.stringify(v.data)}`).join('');
          return `\n  around it, ${STACKS[0].name}:${near(ex)}\n  ${STACKS[1].name}:${near(ey)}` +
            `\n  during actions: ${[ex[i]?.action, ey[i]?.action].map((k) => `${k} ${JSON.stringify(script[k])}`).join('\n                  ')}`;
        });
      }
      sameList(`roomAdded/roomRemoved of ${u.id} (in order)`, got[0].events[u.id].membership, got[1].events[u.id].membership);
      sameList(`messages received by ${u.id} (sorted)`, got[0].events[u.id].received, got[1].events[u.id].received);
    }
  });
});
