// Helpers around the stock socket.io-client, as a web frontend uses it.

import { io } from 'socket.io-client';
import { waitFor, withTimeout } from './harness.mjs';

export { io };

const opened = new Set();

/**
 * io(url, opts) with a fresh Manager (forceNew) and short reconnection
 * delays so reconnection tests stay fast. Closed after test `t` when given.
 */
export function client(url, opts = {}, t) {
  const socket = io(url, {
    forceNew: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    timeout: 5000,
    ...opts,
  });
  opened.add(socket);
  if (t) t.after(() => closeClient(socket));
  return socket;
}

export function closeClient(socket) {
  opened.delete(socket);
  socket.disconnect();
  socket.io.engine?.close();
}

/** Close every client this module opened (for after() hooks). */
export function closeAllClients() {
  for (const socket of [...opened]) closeClient(socket);
}

/** Resolve once `socket` is connected; reject on connect_error or timeout. */
export function connected(socket, ms = 5000) {
  if (socket.connected) return Promise.resolve();
  let onConnect;
  let onError;
  const p = new Promise((resolve, reject) => {
    onConnect = () => resolve();
    onError = (err) => reject(new Error(`connect_error: ${err.message}`));
    socket.once('connect', onConnect);
    socket.once('connect_error', onError);
  });
  return withTimeout(p, ms, 'socket.io connect').finally(() => {
    socket.off('connect', onConnect);
    socket.off('connect_error', onError);
  });
}

/** Emit `message` with `args` and resolve to the args of the message-back. */
export async function echo(socket, ...args) {
  const back = waitFor(socket, 'message-back', 5000);
  socket.emit('message', ...args);
  return (await back);
}

/** Emit `event` with an ack; resolve to all ack arguments (not just the first). */
export function emitAck(socket, event, args, ms = 5000) {
  return new Promise((resolve, reject) => {
    socket.timeout(ms).emit(event, ...args, (err, ...ackArgs) => {
      // socket.io-client also fails an ack at once when the socket disconnects
      if (err) reject(new Error(`no ack for ${event} within ${ms} ms (${err.message})`));
      else resolve(ackArgs);
    });
  });
}
