// Server CPU from /proc, for the benchmarks (bench.mjs, durable.mjs): what
// each server process (with its descendants) and the machine spent between
// two samples taken around a measured window.
//
// A process's CPU is utime+stime (all its threads) plus cutime+cstime (the
// children it reaped: a PostgreSQL backend that exits inside the window is
// counted in the postmaster's cutime once reaped), summed over its live
// descendants. Linux only; the counters tick at CLK_TCK (usually 100/s), so
// a figure is good to 1/CLK_TCK s per process.

import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';

export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Every process now: Map pid -> {ppid, ticks (own + reaped children)}. */
export function procTable() {
  const table = new Map();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const st = readFileSync(`/proc/${e}/stat`, 'utf8');
      // after "(comm)": state ppid ... utime=11 stime=12 cutime=13 cstime=14
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      table.set(Number(e), { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) });
    } catch {
      // exited meanwhile
    }
  }
  return table;
}

/**
 * CPU seconds of `pid` and its descendants in `table` (procTable()); null
 * when `pid` is gone.
 */
export function treeCpu(pid, table = procTable()) {
  if (!table.has(pid)) return null;
  const kids = new Map();
  for (const [p, s] of table) {
    if (!kids.has(s.ppid)) kids.set(s.ppid, []);
    kids.get(s.ppid).push(p);
  }
  let sum = 0;
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop();
    sum += table.get(p).ticks;
    todo.push(...(kids.get(p) ?? []));
  }
  return sum / CLK_TCK;
}

/**
 * The machine's idle and steal seconds so far (/proc/stat, all cores).
 * Busy time is the wall time times the cores less idle: the idle time is
 * exact, while the user/system ticks are samples that miss the short bursts
 * of a lightly loaded machine.
 */
export function machineCpu() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return { idle: (f[3] + f[4]) / CLK_TCK, steal: f[7] / CLK_TCK };
}

/**
 * CPU seconds of the PostgreSQL backends under `postmaster` (its children
 * whose title is "postgres: USER DB ..."): the connections' work, without
 * the checkpointer, background writer, WAL writer, autovacuum launcher and
 * the workers it has reaped (their CPU goes to the postmaster's own
 * cutime). null when `postmaster` is gone.
 */
const PG_BACKGROUND = /^postgres: (checkpointer|background writer|walwriter|autovacuum|logical replication|stats|archiver|startup|wal)/;
export function pgBackendsCpu(postmaster, table = procTable()) {
  if (!table.has(postmaster)) return null;
  let sum = 0;
  for (const [pid, s] of table) {
    if (s.ppid !== postmaster) continue;
    let title = '';
    try {
      title = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
    } catch {
      continue; // exited meanwhile
    }
    if (title.startsWith('postgres: ') && !PG_BACKGROUND.test(title)) sum += treeCpu(pid, table) ?? 0;
  }
  return sum;
}

/**
 * One sample: `groups` is {name: [pid, ...]}; each name gets the CPU
 * seconds of its pids' trees summed (null when one of them is gone). /proc
 * is read once for all of them. With `pgBackends` (a postmaster's pid), the
 * part `pg_backends` is the CPU of its backends alone (pgBackendsCpu).
 */
export function cpuSample(groups, { pgBackends } = {}) {
  const table = procTable();
  const cpu = {};
  if (pgBackends) cpu.pg_backends = pgBackendsCpu(pgBackends, table);
  for (const [name, pids] of Object.entries(groups)) {
    let sum = 0;
    for (const pid of pids) {
      const s = treeCpu(pid, table);
      if (s === null) {
        sum = null;
        break;
      }
      sum += s;
    }
    cpu[name] = sum;
  }
  return { t: performance.now() / 1000, cpu, machine: machineCpu() };
}

const round3 = (x) => Math.round(x * 1000) / 1000;

/**
 * From two samples of the same groups: {secs, <name>: CPU seconds (null
 * when unknown), busy: the machine's busy core-seconds, steal, cores}.
 */
export function cpuDelta(a, b) {
  if (!a || !b) return null;
  const secs = b.t - a.t;
  const out = { secs: round3(secs) };
  for (const name of Object.keys(a.cpu)) {
    const x = a.cpu[name];
    const y = b.cpu[name];
    out[name] = x === null || y === null || y === undefined ? null : round3(y - x);
  }
  const cores = os.cpus().length;
  out.cores = cores;
  out.busy = round3(secs * cores - (b.machine.idle - a.machine.idle));
  out.steal = round3(b.machine.steal - a.machine.steal);
  return out;
}
