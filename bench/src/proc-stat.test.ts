import { describe, expect, it } from 'vitest';
import { cpuMsOf, cpuTicksOfStat, rssBytesOfStatus, rssOf } from './proc-stat';

describe('/proc parsing', () => {
  it('adds utime and stime (fields 14 and 15) of a stat line', () => {
    const stat = '28205 (cat) R 28200 28200 22351 0 -1 4194304 97 0 0 0 25 7 0 0 20 0 1 0 201825 3133440 359 18446744073709551615';
    expect(cpuTicksOfStat(stat)).toBe(32);
  });

  it('counts fields from the last parenthesis, whatever the command name holds', () => {
    const stat = '42 (node (worker) 1) S 1 42 42 0 -1 4194560 10 0 0 0 120 30 0 0 20 0 11 0 1000 1000000 5000';
    expect(cpuTicksOfStat(stat)).toBe(150);
  });

  it('refuses text that is not a stat line', () => {
    expect(() => cpuTicksOfStat('hello')).toThrow(/not a \/proc/);
    expect(() => cpuTicksOfStat('1 (x) S 1')).toThrow(/not a \/proc/);
  });

  it('reads VmRSS in bytes from a status file', () => {
    expect(rssBytesOfStatus('Name:\tnode\nVmPeak:\t  900 kB\nVmRSS:\t   53248 kB\nThreads:\t11\n')).toBe(53248 * 1024);
    expect(() => rssBytesOfStatus('Name:\tkthreadd\n')).toThrow(/VmRSS/);
  });

  it.runIf(process.platform === 'linux')('reads its own process', () => {
    expect(cpuMsOf(process.pid)).toBeGreaterThan(0);
    expect(rssOf(process.pid)).toBeGreaterThan(1024 * 1024);
    expect(cpuMsOf(2 ** 22 + 1)).toBe(0);
  });
});
