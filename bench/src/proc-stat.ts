import { readFileSync } from 'node:fs';

/**
 * User plus system CPU time, in clock ticks, from the text of `/proc/<pid>/stat`. The command name
 * (field 2) is in parentheses and may itself hold spaces or parentheses, so fields are counted
 * from the last `)`: utime and stime are fields 14 and 15.
 */
export function cpuTicksOfStat(stat: string): number {
  const close = stat.lastIndexOf(')');
  if (close < 0) throw new Error('not a /proc/<pid>/stat line');
  const fields = stat.slice(close + 2).trim().split(/\s+/);
  // fields[0] is field 3 (state): utime is field 14, stime field 15.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error('not a /proc/<pid>/stat line');
  return utime + stime;
}

/** Resident memory in bytes from the text of `/proc/<pid>/status` (its `VmRSS` line, in kB). */
export function rssBytesOfStatus(status: string): number {
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!m) throw new Error('no VmRSS line in /proc/<pid>/status');
  return Number(m[1]) * 1024;
}

/** Clock ticks per second of /proc figures (USER_HZ), 100 on Linux. */
export const TICKS_PER_SECOND = 100;

/** CPU milliseconds a process has used so far; 0 once it is gone (its figures went with it). */
export function cpuMsOf(pid: number): number {
  try {
    return (cpuTicksOfStat(readFileSync(`/proc/${pid}/stat`, 'utf8')) * 1000) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/** Resident memory of a process in bytes. */
export function rssOf(pid: number): number {
  return rssBytesOfStatus(readFileSync(`/proc/${pid}/status`, 'utf8'));
}
