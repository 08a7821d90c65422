import { describe, expect, it } from 'vitest';
import { connectionLoss, isConnectionLoss } from './connection-loss';
import { CofferError } from './errors';

function withCode(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

function named(name: string, message = 'x'): Error {
  const err = new Error(message);
  err.name = name;
  return err;
}

describe('connectionLoss', () => {
  it.each([
    [withCode('terminating connection due to administrator command', '57P01'), 'postgres:57P01'],
    [withCode('terminating connection because of crash of another server process', '57P02'), 'postgres:57P02'],
    [withCode('the database system is starting up', '57P03'), 'postgres:57P03'],
    [withCode('sorry, too many clients already', '53300'), 'postgres:53300'],
    [withCode('connection failure', '08006'), 'postgres:08006'],
    [withCode('connection does not exist', '08003'), 'postgres:08003'],
    [withCode('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED'), 'network:ECONNREFUSED'],
    [withCode('read ECONNRESET', 'ECONNRESET'), 'network:ECONNRESET'],
    [withCode('connect ETIMEDOUT', 'ETIMEDOUT'), 'network:ETIMEDOUT'],
    [new Error('Connection terminated unexpectedly'), 'postgres:connection terminated'],
    [new Error('Connection terminated'), 'postgres:connection terminated'],
    [new Error('Client has encountered a connection error and is not queryable'), 'postgres:connection terminated'],
    [new Error('timeout exceeded when trying to connect'), 'postgres:connection terminated'],
    [named('ConnectionError', 'connection refused'), 'nats:ConnectionError'],
    [named('ClosedConnectionError', 'closed connection'), 'nats:ClosedConnectionError'],
    [named('TimeoutError', 'timeout'), 'nats:TimeoutError'],
  ])('recognises %s', (err, kind) => {
    expect(connectionLoss(err)).toBe(kind);
    expect(isConnectionLoss(err)).toBe(true);
  });

  it('looks through cause chains and AggregateErrors (Node reports every address it tried)', () => {
    const aggregate = new AggregateError([withCode('connect ECONNREFUSED ::1:5432', 'ECONNREFUSED')], 'connect failed');
    expect(connectionLoss(aggregate)).toBe('network:ECONNREFUSED');
    const wrapped = new Error('could not load', { cause: named('ConnectionError', 'connection refused') });
    expect(connectionLoss(wrapped)).toBe('nats:ConnectionError');
  });

  it.each([
    withCode('duplicate key value violates unique constraint', '23505'),
    withCode('database "x" does not exist', '3D000'),
    withCode('password authentication failed for user "x"', '28P01'),
    withCode('relation "x" does not exist', '42P01'),
    withCode('could not serialize access', '40001'),
    new TypeError('cannot read properties of undefined'),
    new Error('some bug'),
    new CofferError('unavailable', 'Connection terminated'),
    'Connection terminated',
    undefined,
  ])('leaves other errors alone: %s', (err) => {
    expect(connectionLoss(err)).toBeUndefined();
  });

  it('stops at a bounded depth on a cyclic cause', () => {
    const a = new Error('a');
    const b = new Error('b', { cause: a });
    Object.defineProperty(a, 'cause', { value: b });
    expect(connectionLoss(a)).toBeUndefined();
  });
});
