// A group room for the benchmarks (bench.mjs W4, durable.mjs --group), set
// up behind the servers' back, as POST /api/rooms and storage's membership
// cache would have it: the rows in PostgreSQL, then both sets of the cache
// in Redis. The tables must exist (chat-storage started once on the
// database: it applies the migrations).

import { execFile } from 'node:child_process';
import path from 'node:path';
import { PG_BIN_DIR } from '../../integration/lib/stack.mjs';

/** Run `query` with psql against the database at `url`; resolves to its output. */
export function psql(url, query) {
  return new Promise((resolve, reject) => {
    execFile(PG_BIN_DIR ? path.join(PG_BIN_DIR, 'psql') : 'psql', ['-qtAX', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', query],
      { encoding: 'utf8', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`psql: ${err.message}${stderr ? `\n${stderr}` : ''}`));
        else resolve(stdout.trim());
      });
  });
}

/**
 * Group `room` whose members are `users` (the first created it): the rows
 * through `sql(query)`, the cache through `redis(args)` (one command each).
 * User ids and the room id must be plain (letters, digits, '_'): they are
 * put in the SQL text as they are.
 */
export async function createGroupRoom({ sql, redis, room, users }) {
  for (const id of [room, ...users]) if (!/^[A-Za-z0-9_]+$/.test(id)) throw new Error(`createGroupRoom: bad id ${id}`);
  await sql(`INSERT INTO rooms(id, kind, name, created_by) VALUES ('${room}', 'group', 'bench', '${users[0]}');
    INSERT INTO room_members(room_id, user_id) SELECT '${room}', u FROM unnest(ARRAY['${users.join("','")}']) u`);
  for (let i = 0; i < users.length; i += 1000) await redis(['SADD', `{r:${room}}:members`, ...users.slice(i, i + 1000)]);
  // one connection per command: a few at a time
  for (let i = 0; i < users.length; i += 50) {
    await Promise.all(users.slice(i, i + 50).map((u) => redis(['SADD', `{u:${u}}:rooms`, room])));
  }
}
