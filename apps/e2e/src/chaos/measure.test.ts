import { describe, expect, it } from 'vitest';
import { compareWithStream, duplicateWrites, failuresOf, findOrphans, lostWrite, renderTable, secretCoordinatesIn, totalRow, type ReportRow } from './measure';
import { lastMessages } from './supervisor';
import { seededRandom, updateRequest, type ActorTrack } from './workload';

const base = (n: number) => `coffer_workspace_w_secret_${n}`;
const c = (n: number, v: number) => `${base(n)}_v${v}`;

describe('secretCoordinatesIn', () => {
  it('finds every {"_secret": …} at any depth, in arrays too, and nothing else', () => {
    const partial = { url: 'u', api_token: { _secret: c(1, 2) }, credentials: { client_secret: { _secret: c(2, 1) } }, list: [{ k: { _secret: c(3, 1) } }], other: { _secret: 'x', extra: 1 } };
    expect(secretCoordinatesIn(partial)).toEqual([c(1, 2), c(2, 1), c(3, 1)]);
  });
});

describe('findOrphans', () => {
  const actor = { actorId: 'a', partialConfig: { t: { _secret: c(1, 3) } }, history: [{ t: { _secret: c(1, 1) } }, { t: { _secret: c(1, 3) } }] };

  it('holds the current version and older versions the actor once committed (its history)', () => {
    expect(findOrphans([{ coordinate: c(1, 1), baseCoordinate: base(1) }, { coordinate: c(1, 3), baseCoordinate: base(1) }], [actor])).toEqual([]);
  });

  it('flags a version written at secrets that no committed config pointed at, below or above the current one', () => {
    const active = [2, 4].map((v) => ({ coordinate: c(1, v), baseCoordinate: base(1) }));
    expect(findOrphans(active, [actor])).toEqual([
      { coordinate: c(1, 2), reason: 'version never in a committed config' },
      { coordinate: c(1, 4), reason: 'version never in a committed config' },
    ]);
  });

  it('flags every version of a base no live actor uses (a crashed create, a deleted actor, a dropped field)', () => {
    expect(findOrphans([{ coordinate: c(9, 1), baseCoordinate: base(9) }], [actor])).toEqual([{ coordinate: c(9, 1), reason: 'base used by no live actor' }]);
  });
});

describe('compareWithStream', () => {
  it('counts outbox events absent from the stream and events on it more than once', () => {
    expect(compareWithStream(['a', 'b', 'c', 'd'], new Map([['a', 1], ['b', 2], ['d', 3], ['z', 1]]))).toEqual({ missing: 1, doubled: 2 });
  });
});

describe('lostWrite', () => {
  const values = new Map([
    ['t1', { apiToken: 'x1', clientSecret: 'y1' }],
    ['t2', { apiToken: 'x2', clientSecret: 'y1' }],
  ]);
  const track = (over: Partial<ActorTrack> = {}): ActorTrack => ({
    actorId: 'a',
    workspaceId: 'w',
    version: 2,
    name: 't1',
    dirty: false,
    gone: false,
    acceptable: new Set(['t1']),
    lastAcked: { tag: 't1', kind: 'rotate', version: 2 },
    deleteUnknown: false,
    ...over,
  });

  it('accepts the last acknowledged write read back whole', () => {
    expect(lostWrite(track(), { found: true, name: 't1', version: 2, values: { apiToken: 'x1', clientSecret: 'y1' } }, values)).toBeUndefined();
  });

  it('accepts a later write whose outcome was unknown', () => {
    const t = track({ acceptable: new Set(['t1', 't2']) });
    expect(lostWrite(t, { found: true, name: 't2', version: 3, values: { apiToken: 'x2', clientSecret: 'y1' } }, values)).toBeUndefined();
  });

  it('reports an acknowledged write that is gone, overwritten, older or hydrates to other values', () => {
    expect(lostWrite(track(), { found: false }, values)).toBe('acknowledged, then NOT_FOUND');
    expect(lostWrite(track(), { found: true, name: 't2', version: 3, values: { apiToken: 'x2', clientSecret: 'y1' } }, values)).toMatch(/nobody acknowledged/);
    expect(lostWrite(track(), { found: true, name: 't1', version: 1, values: { apiToken: 'x1', clientSecret: 'y1' } }, values)).toMatch(/below the acknowledged 2/);
    expect(lostWrite(track(), { found: true, name: 't1', version: 2, values: { apiToken: 'x1', clientSecret: 'old' } }, values)).toBe('hydrates to other secret values');
    expect(lostWrite(track(), { found: true, name: 't1', version: 2, hydrateError: 'NOT_FOUND' }, values)).toMatch(/do not hydrate/);
  });

  it('expects an acknowledged delete to stay deleted, and forgives NOT_FOUND after a delete of unknown outcome', () => {
    expect(lostWrite(track({ lastAcked: { tag: 'd', kind: 'delete', version: 3 } }), { found: true, name: 't1', version: 2 }, values)).toMatch(/still readable/);
    expect(lostWrite(track({ deleteUnknown: true }), { found: false }, values)).toBeUndefined();
  });

  it('has nothing to lose for an actor never acknowledged', () => {
    expect(lostWrite(track({ lastAcked: undefined }), { found: false }, values)).toBeUndefined();
  });
});

describe('updateRequest', () => {
  const t = { actorId: 'a', workspaceId: 'w', version: 4, name: 't1', dirty: false, gone: false, acceptable: new Set<string>(), deleteUnknown: false };
  const current = { apiToken: 'x1', clientSecret: 'y1' };

  it('masks what it keeps and predicts the values the actor then holds', () => {
    const rename = updateRequest(t, 'rename', 'r', current);
    expect(JSON.parse(rename.req.configJson)).toMatchObject({ api_token: '**********', credentials: { client_secret: '**********' } });
    expect(rename.next).toEqual(current);
    expect(rename.req.expectedVersion).toBe(4);
    const rotate = updateRequest(t, 'rotate', 'r', current);
    expect(rotate.next.clientSecret).toBe('y1');
    expect(JSON.parse(rotate.req.configJson).api_token).toBe(rotate.next.apiToken);
  });

  it('sends all-new values when the current ones are unknown', () => {
    const r = updateRequest(t, 'rename', 'r', undefined);
    expect(r.kind).toBe('rotate-both');
    expect(JSON.stringify(r.req)).not.toContain('**********');
  });
});

describe('the table', () => {
  const row = (over: Partial<ReportRow>): ReportRow => ({
    scenario: 's',
    tried: 10,
    acknowledged: 9,
    lost: 0,
    duplicates: 0,
    missingOnNats: 0,
    doubledOnNats: 0,
    orphans: 0,
    stuck: 0,
    exits: 0,
    recovery: '1.0 s',
    ...over,
  });

  it('sums the rows, fails on any non-zero failing column, and renders one Markdown table', () => {
    const total = totalRow([row({ orphans: 2 }), row({ exits: 1 })], 'converged 3.0 s');
    expect(total).toMatchObject({ tried: 20, acknowledged: 18, orphans: 2, exits: 1, recovery: 'converged 3.0 s' });
    expect(failuresOf(total)).toEqual(['orphans 2', 'exits 1']);
    expect(failuresOf(row({}))).toEqual([]);
    const table = renderTable([row({}), total]).split('\n');
    expect(table).toHaveLength(4);
    expect(table[0]).toBe('| scenario | tried | acknowledged | lost | duplicate effects | missing on NATS | doubled on NATS | orphan versions | stuck actors | process exits | recovery time |');
  });

  it('counts writes applied more than once by their tags', () => {
    expect(duplicateWrites(['a', 'b', 'a', 'c', 'a', 'b'])).toBe(3);
  });
});

describe('lastMessages', () => {
  it("keeps a crash's error line, emitter and code, and the message of warnings, never a field's value", () => {
    const lines = [
      JSON.stringify({ level: 30, msg: 'listening', port: 1 }),
      JSON.stringify({ level: 50, msg: 'relay failed', err: { type: 'Error', code: 'ECONNRESET', message: 'value-that-must-not-show' } }),
      'node:events:497',
      "      throw er; // Unhandled 'error' event",
      'error: terminating connection due to administrator command',
      "Emitted 'error' event on BoundPool instance at:",
      "  code: '57P01',",
      'Node.js v20.20.2',
    ];
    expect(lastMessages(lines)).toEqual([
      'relay failed (Error ECONNRESET)',
      'error: terminating connection due to administrator command',
      "Emitted 'error' event on BoundPool instance at:",
      "code: '57P01',",
    ]);
  });
});

describe('seededRandom', () => {
  it('repeats its sequence for a seed', () => {
    const a = seededRandom(7);
    const b = seededRandom(7);
    expect([a(), a(), a()]).toEqual([b(), b(), b()]);
  });
});
