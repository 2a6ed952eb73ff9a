// Runs the load generator (tests/load/main.c) and parses its output:
// the summary is the last line of stdout, key=value pairs; the lines before
// it (ready, measure_start, measure_end) go to onLine as they come.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './stack.mjs';

export const LOAD_BIN = process.env.CHAT_LOAD_BIN || path.join(ROOT, 'build/bin/chat-load');

/** Numbers where they parse, strings otherwise. */
export function summaryOf(line) {
  const kv = {};
  for (const f of line.trim().split(/\s+/)) {
    const i = f.indexOf('=');
    if (i > 0) kv[f.slice(0, i)] = f.slice(i + 1);
  }
  return kv;
}

/**
 * Resolves to {code, kv, out, err, n(key)} once chat-load exits; n() is a
 * summary value as a number. stderr is collected, or inherited with
 * {inheritStderr: true}.
 */
export function runChatLoad(argv, { onLine, inheritStderr = false } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(LOAD_BIN, argv, { stdio: ['ignore', 'pipe', inheritStderr ? 'inherit' : 'pipe'] });
    let out = '';
    let err = '';
    let partial = '';
    p.stdout.on('data', (d) => {
      out += d;
      partial += d;
      const lines = partial.split('\n');
      partial = lines.pop();
      for (const line of lines) onLine?.(line);
    });
    p.stderr?.on('data', (d) => { err += d; });
    p.on('error', reject);
    p.on('exit', (code) => {
      const kv = summaryOf(out.trim().split('\n').pop() ?? '');
      resolve({ code, kv, out, err, n: (k) => Number(kv[k]) });
    });
  });
}
