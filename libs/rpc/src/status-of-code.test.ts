import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { errorCodes } from '@coffer/contracts';
import { codeOfStatus, statusOfCode } from './status-of-code';

const expected = {
  not_found: grpc.status.NOT_FOUND,
  version_conflict: grpc.status.ABORTED,
  invalid_argument: grpc.status.INVALID_ARGUMENT,
  unauthenticated: grpc.status.UNAUTHENTICATED,
  permission_denied: grpc.status.PERMISSION_DENIED,
  failed_precondition: grpc.status.FAILED_PRECONDITION,
  unavailable: grpc.status.UNAVAILABLE,
  internal: grpc.status.INTERNAL,
} as const;

describe('statusOfCode', () => {
  it.each([...errorCodes])('maps %s to its status and back', (code) => {
    expect(statusOfCode[code]).toBe(expected[code]);
    expect(codeOfStatus(statusOfCode[code])).toBe(code);
  });

  it('covers exactly the error codes, each with a distinct non-OK status', () => {
    expect(Object.keys(statusOfCode).sort()).toEqual([...errorCodes].sort());
    const statuses = Object.values(statusOfCode);
    expect(new Set(statuses).size).toBe(statuses.length);
    expect(statuses).not.toContain(grpc.status.OK);
  });
});

describe('codeOfStatus', () => {
  it('reports transport failures as unavailable', () => {
    expect(codeOfStatus(grpc.status.DEADLINE_EXCEEDED)).toBe('unavailable');
    expect(codeOfStatus(grpc.status.CANCELLED)).toBe('unavailable');
    expect(codeOfStatus(grpc.status.UNAVAILABLE)).toBe('unavailable');
  });

  it('gives every other status some code, internal when nothing fits', () => {
    for (const value of Object.values(grpc.status).filter((v): v is number => typeof v === 'number')) {
      expect(errorCodes).toContain(codeOfStatus(value));
    }
    expect(codeOfStatus(grpc.status.UNKNOWN)).toBe('internal');
    expect(codeOfStatus(grpc.status.UNIMPLEMENTED)).toBe('internal');
  });
});
