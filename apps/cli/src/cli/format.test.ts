import { describe, expect, it } from 'vitest';
import { CofferError } from '@coffer/contracts';
import { errorLine, fields, syncProgressLine, table } from './format';

describe('coffer output', () => {
  it('lays out a table, columns as wide as their widest cell, headers upper-case', () => {
    expect(table(['id', 'name'], [['1', 'alpha'], ['200', 'b']])).toBe(['ID   NAME', '1    alpha', '200  b'].join('\n'));
    expect(table(['id'], [])).toBe('(none)');
  });

  it('aligns key: value fields', () => {
    expect(fields([['id', 'x'], ['version', '3']])).toBe('id:      x\nversion: 3');
  });

  it('prints an error as one line, with the server code and without a stack', () => {
    expect(errorLine(new CofferError('not_found', 'no such actor'))).toBe('error: not_found: no such actor');
    const err = new Error('first line\n    at somewhere (file.ts:1:1)');
    expect(errorLine(err)).toBe('error: first line');
    expect(errorLine('plain')).toBe('error: plain');
  });

  it('prints a sync progress line', () => {
    expect(syncProgressLine('job-1', 'running', 2, 1234)).toBe('sync job-1: running, 2 record(s), 1.2 s');
  });
});
