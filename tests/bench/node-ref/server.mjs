// A reference Node.js Socket.IO chat server, the typical design chat-gateway
// replaces, to benchmark the two side by side with the same load generator
// (build/bin/chat-load) and the same events (proto/PROTOCOL.md, "chat").
//
//   node server.mjs [--port P] [--redis URL] [--mode relay|durable|batched]
//                   [--database URL] [--jwt-secret S] [--room-secret S]
//                   [--pg-pool N] [--batch-max N] [--batch-ms MS]
//                   [--max-text-length N]
//
// Every flag has an environment variable too (PORT, REDIS_URL, MODE,
// DATABASE_URL, JWT_SECRET, ROOM_SECRET, PG_POOL, BATCH_MAX, BATCH_MS,
// MAX_TEXT_LENGTH). With --redis the process uses @socket.io/redis-adapter,
// so several processes (one per core) form a cluster. Modes:
//
//   relay    messageReceived is broadcast, then the sender gets its ack;
//            nothing is stored (chat-gateway --storage off)
//   durable  one INSERT ... RETURNING per message, awaited before the
//            broadcast and the ack (the tutorials' design)
//   batched  messages are queued and stored by one multi-row INSERT per
//            batch (when --batch-max are queued, or --batch-ms after the
//            first), then broadcast and acked (group commit, as chat-storage)
//
// Prints "listening PORT" once ready; SIGTERM/SIGINT stop it cleanly.

import crypto from 'node:crypto';
import http from 'node:http';
import { Server } from 'socket.io';

const args = process.argv.slice(2);
function opt(name, env, def) {
  const i = args.indexOf(`--${name}`);
  if (i >= 0) {
    if (i + 1 >= args.length) fail(`--${name} needs a value`);
    return args[i + 1];
  }
  return process.env[env] ?? def;
}
function fail(msg) {
  console.error(`node-ref: ${msg}`);
  process.exit(2);
}

const cfg = {
  port: Number(opt('port', 'PORT', '3000')),
  redis: opt('redis', 'REDIS_URL', ''),
  mode: opt('mode', 'MODE', 'relay'),
  database: opt('database', 'DATABASE_URL', ''),
  jwtSecret: opt('jwt-secret', 'JWT_SECRET', ''),
  roomSecret: opt('room-secret', 'ROOM_SECRET', ''),
  pgPool: Number(opt('pg-pool', 'PG_POOL', '10')),
  batchMax: Number(opt('batch-max', 'BATCH_MAX', '1000')),
  batchMs: Number(opt('batch-ms', 'BATCH_MS', '2')),
  maxText: Number(opt('max-text-length', 'MAX_TEXT_LENGTH', '4000')),
};
if (!['relay', 'durable', 'batched'].includes(cfg.mode)) fail(`unknown --mode ${cfg.mode}`);
if (cfg.mode !== 'relay' && !cfg.database) fail(`--mode ${cfg.mode} needs --database`);
if (!cfg.jwtSecret) fail('--jwt-secret is required');
if (!Number.isInteger(cfg.port) || cfg.port < 0 || cfg.port > 65535) fail('bad --port');
if (!(cfg.pgPool >= 1 && cfg.batchMax >= 1 && cfg.batchMs >= 0 && cfg.maxText >= 1))
  fail('bad numeric option');

// ---- identity: HS256 JWT, verified with node's crypto ----

function b64urlJson(s) {
  return JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
}

// Returns {userId, firstName} or null. Same rules as the gateway: HS256
// only, exp required and in the future, sub of 1-128 printable ASCII bytes
// without spaces, name defaults to sub.
function verifyJwt(token) {
  if (typeof token !== 'string' || token.length > 4096) return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const header = b64urlJson(parts[0]);
    if (header?.alg !== 'HS256') return null;
    const want = crypto
      .createHmac('sha256', cfg.jwtSecret)
      .update(`${parts[0]}.${parts[1]}`)
      .digest();
    const got = Buffer.from(parts[2], 'base64url');
    if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) return null;
    const claims = b64urlJson(parts[1]);
    if (typeof claims?.exp !== 'number' || claims.exp <= Date.now() / 1000) return null;
    if (!validId(claims.sub)) return null;
    const name = typeof claims.name === 'string' && claims.name ? claims.name : claims.sub;
    return { userId: claims.sub, firstName: name };
  } catch {
    return null; // bad base64 or JSON
  }
}

function validId(s) {
  return typeof s === 'string' && s.length >= 1 && s.length <= 128 && /^[\x21-\x7e]+$/.test(s);
}

// ---- direct room ids: the gateway's scheme (proto/chat.c chat_dm_room_id),
// so a room id is the same on every process and on chat-gateway ----

const dmKey = cfg.roomSecret
  ? crypto.createHash('sha256').update(cfg.roomSecret).digest()
  : crypto.createHmac('sha256', cfg.jwtSecret).update('chat direct room ids v1').digest();
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

function dmRoomId(a, b) {
  const [x, y] = a < b ? [a, b] : [b, a];
  const mac = crypto.createHmac('sha256', dmKey).update(`${x}\n${y}`).digest();
  let id = 'dm_';
  for (let i = 0; i < 22; i++) id += B64[mac[i] & 63];
  return id;
}

// ---- storage ----

let pool = null;
if (cfg.mode !== 'relay') {
  const pg = (await import('pg')).default;
  pool = new pg.Pool({ connectionString: cfg.database, max: cfg.pgPool });
  // an idle client's error (server restart) must not crash the process
  pool.on('error', (err) => console.error(`node-ref: postgres: ${err.message}`));
  // Several processes start at once: IF NOT EXISTS still races in the
  // catalog (unique_violation on pg_type), and losing that race is fine.
  try {
    await pool.query(`CREATE TABLE IF NOT EXISTS node_messages(
        id bigserial PRIMARY KEY, room_id text, sender_id text, client_msg_id text,
        body text, created_at timestamptz DEFAULT now())`);
  } catch (err) {
    if (err.code !== '23505' && err.code !== '42P07') throw err;
  }
}

// Stores one message; resolves to {id, createdAt}.
async function insertOne(m) {
  const r = await pool.query(
    'INSERT INTO node_messages(room_id, sender_id, client_msg_id, body) ' +
      'VALUES ($1, $2, $3, $4) RETURNING id, created_at',
    [m.roomId, m.userId, m.clientMsgId, m.text],
  );
  return { id: String(r.rows[0].id), createdAt: r.rows[0].created_at.toISOString() };
}

// batched mode: one queue per process. A batch is one INSERT of unnest()ed
// arrays (4 parameters whatever its size); PostgreSQL inserts the rows of
// an INSERT ... SELECT in the SELECT's order and RETURNING gives them back
// in that order, so row i is message i. Up to --pg-pool batches are in
// flight, but their results are handled in batch order, so messages are
// broadcast in the order they arrived.
let queue = [];
let flushTimer = null;
let handled = Promise.resolve();
const inFlight = new Set();

function enqueue(m) {
  queue.push(m);
  if (queue.length >= cfg.batchMax) flush();
  else if (!flushTimer) flushTimer = setTimeout(flush, cfg.batchMs);
}

function flush() {
  if (flushTimer) clearTimeout(flushTimer);
  flushTimer = null;
  if (queue.length === 0) return;
  const batch = queue;
  queue = [];
  const stored = pool.query(
    'INSERT INTO node_messages(room_id, sender_id, client_msg_id, body) ' +
      'SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) ' +
      'RETURNING id, created_at',
    [
      batch.map((m) => m.roomId),
      batch.map((m) => m.userId),
      batch.map((m) => m.clientMsgId),
      batch.map((m) => m.text),
    ],
  );
  const done = (handled = handled
    .then(() => stored)
    .then(
      (r) => {
        if (r.rows.length !== batch.length) throw new Error('RETURNING count mismatch');
        for (let i = 0; i < batch.length; i++)
          deliver(batch[i], String(r.rows[i].id), r.rows[i].created_at.toISOString());
      },
      (err) => {
        console.error(`node-ref: batch insert failed: ${err.message}`);
        for (const m of batch) reply(m.socket, 'sendMessage', m.ack, { error: 'unavailable' });
      },
    )
    .catch((err) => console.error(`node-ref: ${err.message}`)));
  track(done);
}

// What shutdown waits for.
function track(p) {
  inFlight.add(p);
  p.finally(() => inFlight.delete(p));
}

// ---- Socket.IO ----

const httpServer = http.createServer((req, res) => {
  res.writeHead(404).end();
});
const io = new Server(httpServer, { serveClient: false });

let redisClients = [];
if (cfg.redis) {
  const { createClient } = await import('redis');
  const { createAdapter } = await import('@socket.io/redis-adapter');
  const pub = createClient({ url: cfg.redis });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on('error', (err) => console.error(`node-ref: redis: ${err.message}`));
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
  redisClients = [pub, sub];
}

io.use((socket, next) => {
  const user = verifyJwt(socket.handshake.auth?.token);
  if (!user) return next(new Error('unauthorized'));
  socket.data.user = user;
  next();
});

function reply(socket, event, ack, body) {
  if (typeof ack === 'function') ack(body);
  else if (body.error) socket.emit('chatError', { event, error: body.error });
}

// The room of a {roomId} or {targetUserId} payload: a roomId must be one
// the socket joined; a targetUserId joins the direct room first.
function roomOf(socket, data) {
  if (typeof data?.roomId === 'string') {
    return socket.rooms.has(data.roomId) ? { roomId: data.roomId } : { error: 'not a member' };
  }
  if (validId(data?.targetUserId)) {
    const roomId = dmRoomId(socket.data.user.userId, data.targetUserId);
    socket.join(roomId);
    return { roomId };
  }
  return { error: 'invalid payload' };
}

// Broadcast, then ack (the sender's socket is in the room and gets its own
// message too, as with chat-gateway).
function deliver(m, id, createdAt) {
  io.to(m.roomId).emit('messageReceived', {
    id,
    roomId: m.roomId,
    userId: m.userId,
    firstName: m.firstName,
    text: m.text,
    createdAt,
    clientMsgId: m.clientMsgId,
  });
  reply(m.socket, 'sendMessage', m.ack, { id, roomId: m.roomId, createdAt });
}

let stopping = false; // set by SIGTERM/SIGINT, see stop()

const idPrefix = crypto.randomBytes(6).toString('base64url');
let idCounter = 0;

io.on('connection', (socket) => {
  const { userId, firstName } = socket.data.user;
  // durable mode: each message's INSERT starts at once, but its broadcast
  // waits for the socket's previous ones, so a sender's messages arrive in
  // the order it sent them (a bare `await` in the handler reorders them
  // once the pool runs queries in parallel).
  let sendChain = Promise.resolve();

  socket.on('joinChat', (data, ack) => {
    if (!validId(data?.targetUserId))
      return reply(socket, 'joinChat', ack, { error: 'invalid payload' });
    const roomId = dmRoomId(userId, data.targetUserId);
    socket.join(roomId);
    reply(socket, 'joinChat', ack, { roomId });
  });

  // Any room, as in the tutorials (no membership check: the reference has
  // no storage to check against); used by the room, typing and fan-out
  // workloads.
  socket.on('joinRoom', (data, ack) => {
    if (!validId(data?.roomId)) return reply(socket, 'joinRoom', ack, { error: 'invalid payload' });
    socket.join(data.roomId);
    reply(socket, 'joinRoom', ack, { roomId: data.roomId });
  });

  socket.on('sendMessage', (data, ack) => {
    // once stopping, nothing new is accepted, so everything accepted gets
    // its ack before the sockets close
    if (stopping) return reply(socket, 'sendMessage', ack, { error: 'unavailable' });
    const text = data?.text ?? data?.msg;
    if (typeof text !== 'string' || text.length === 0)
      return reply(socket, 'sendMessage', ack, { error: 'invalid payload' });
    if (Buffer.byteLength(text) > cfg.maxText)
      return reply(socket, 'sendMessage', ack, { error: 'text too long' });
    const clientMsgId = typeof data.clientMsgId === 'string' ? data.clientMsgId : null;
    const room = roomOf(socket, data);
    if (room.error) return reply(socket, 'sendMessage', ack, room);
    const m = { socket, ack, roomId: room.roomId, userId, firstName, text, clientMsgId };

    if (cfg.mode === 'relay') {
      deliver(m, `${idPrefix}-${(idCounter++).toString(36)}`, new Date().toISOString());
    } else if (cfg.mode === 'batched') {
      enqueue(m);
    } else {
      const stored = insertOne(m);
      stored.catch(() => {}); // handled below, in order
      sendChain = sendChain
        .then(() => stored)
        .then(
          (r) => deliver(m, r.id, r.createdAt),
          (err) => {
            console.error(`node-ref: insert failed: ${err.message}`);
            reply(socket, 'sendMessage', ack, { error: 'unavailable' });
          },
        );
      track(sendChain);
    }
  });

  socket.on('typing', (data, ack) => {
    const room = roomOf(socket, data);
    if (room.error) return reply(socket, 'typing', ack, room);
    socket.to(room.roomId).emit('showTyping', { roomId: room.roomId, userId, firstName });
    reply(socket, 'typing', ack, { ok: true });
  });
});

httpServer.listen(cfg.port, () => {
  console.log(`listening ${httpServer.address().port}`);
});

// ---- shutdown: store and answer what was accepted, then close ----

async function stop(signal) {
  if (stopping) return;
  stopping = true;
  console.error(`node-ref: ${signal}, stopping`);
  const force = setTimeout(() => process.exit(1), 5000);
  force.unref();
  try {
    flush();
    await Promise.allSettled([...inFlight]);
    await new Promise((resolve) => io.close(() => resolve()));
    await Promise.allSettled(redisClients.map((c) => c.quit()));
    if (pool) await pool.end();
  } catch (err) {
    console.error(`node-ref: shutdown: ${err.message}`);
  }
  process.exit(0);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
