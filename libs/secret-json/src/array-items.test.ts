import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SECRET_MASK, SecretJsonError, hydrate, isMask, mask, secretCoordinates, split, type SplitResult } from './index';

// A source's applications with API keys, each with extra headers, and a list of bare keys: secrets
// in array items at two levels, next to a secret outside any array.
const spec = {
  type: 'object',
  properties: {
    token: { type: 'string', airbyte_secret: true },
    applications: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          app_name: { type: 'string' },
          app_id: { type: 'string', airbyte_secret: true },
          app_api_key: { type: 'string', airbyte_secret: true },
          headers: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, value: { type: 'string', airbyte_secret: true } } } },
        },
      },
    },
    keys: { type: 'array', items: { type: 'string', airbyte_secret: true } },
  },
};

type Obj = Record<string, unknown>;
const baseOf = (c: string) => c.slice(0, c.lastIndexOf('_v'));

/** What the secrets service would hold: every written version, by coordinate. */
function secretStore() {
  const values = new Map<string, string>();
  return {
    record(result: SplitResult) {
      for (const w of result.writes) {
        expect(values.has(w.coordinate)).toBe(false);
        values.set(w.coordinate, w.value);
      }
      return result;
    },
    lookup: (c: string) => {
      const v = values.get(c);
      if (v === undefined) throw new Error(`no value for ${c}`);
      return v;
    },
  };
}

function errorOf(f: () => unknown): SecretJsonError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(SecretJsonError);
    return err as SecretJsonError;
  }
  throw new Error('expected a SecretJsonError');
}

describe('secrets in array items follow their item, not its index', () => {
  let n = 0;
  const newBaseCoordinate = () => `coffer_workspace_w_secret_a${++n}`;

  it('two applications, the second sent back alone with its masks: it keeps its own secrets, the first one’s are orphans', () => {
    const store = secretStore();
    const full = { applications: [{ app_name: 'one', app_id: 'id-1', app_api_key: 'key-1' }, { app_name: 'two', app_id: 'id-2', app_api_key: 'key-2' }] };
    const first = store.record(split(spec, full, { newBaseCoordinate }));
    const read = mask(spec, first.partialConfig) as { applications: Obj[] };
    expect(read.applications[1]!.app_api_key).toMatch(/^\*{10}#[0-9a-f]{16}$/);
    expect(read.applications[0]!.app_api_key).not.toBe(read.applications[1]!.app_api_key);

    const second = store.record(split(spec, { applications: [read.applications[1]] }, { stored: first.partialConfig, newBaseCoordinate }));
    expect(hydrate(second.partialConfig, store.lookup)).toEqual({ applications: [{ app_name: 'two', app_id: 'id-2', app_api_key: 'key-2' }] });
    expect(second.writes).toEqual([]);
    const p = first.partialConfig as { applications: Record<string, { _secret: string }>[] };
    expect(second.orphans.sort()).toEqual([p.applications[0]!.app_id!._secret, p.applications[0]!.app_api_key!._secret].sort());
  });

  it('a reordered list keeps each secret with its item, and a new value next to a kept mask gets a base of its own', () => {
    const store = secretStore();
    const first = store.record(split(spec, { keys: ['k-a', 'k-b'] }, { newBaseCoordinate }));
    const read = mask(spec, first.partialConfig) as { keys: string[] };
    const swapped = store.record(split(spec, { keys: [read.keys[1], read.keys[0]] }, { stored: first.partialConfig, newBaseCoordinate }));
    expect(hydrate(swapped.partialConfig, store.lookup)).toEqual({ keys: ['k-b', 'k-a'] });
    expect(swapped.writes).toEqual([]);
    // Index 1 held k-b's base, which the mask at index 0 keeps: the new value must not continue it.
    const replaced = store.record(split(spec, { keys: [read.keys[1], 'k-new'] }, { stored: first.partialConfig, newBaseCoordinate }));
    expect(hydrate(replaced.partialConfig, store.lookup)).toEqual({ keys: ['k-b', 'k-new'] });
    expect(replaced.writes).toEqual([expect.objectContaining({ path: '$.keys[1]', version: 1 })]);
    const bases = secretCoordinates(replaced.partialConfig).map(baseOf);
    expect(new Set(bases).size).toBe(2);
  });

  it('refuses, naming the field, what cannot be decided: a plain mask in an item, one secret kept twice, a malformed or unknown reference', () => {
    const first = split(spec, { applications: [{ app_api_key: 'key-1' }, { app_api_key: 'key-2' }], token: 't' }, { newBaseCoordinate });
    const read = mask(spec, first.partialConfig) as { applications: { app_api_key: string }[]; token: string };
    const stored = { stored: first.partialConfig, newBaseCoordinate };
    expect(errorOf(() => split(spec, { applications: [{ app_api_key: SECRET_MASK }] }, stored)).path).toBe('$.applications[0].app_api_key');
    expect(errorOf(() => split(spec, { applications: [read.applications[0], read.applications[0]] }, stored)).path).toBe('$.applications[1].app_api_key');
    expect(errorOf(() => split(spec, { applications: [{ app_api_key: `${SECRET_MASK}#not-hex` }] }, stored)).path).toBe('$.applications[0].app_api_key');
    expect(errorOf(() => split(spec, { applications: [{ app_api_key: `${SECRET_MASK}#0123456789abcdef` }] }, stored)).path).toBe('$.applications[0].app_api_key');
    // A reference is to a field: an app's key cannot be kept as a header value or a bare key.
    expect(errorOf(() => split(spec, { keys: [read.applications[0]!.app_api_key] }, stored)).path).toBe('$.keys[0]');
    // Outside arrays the plain mask still keeps the secret stored at its path.
    expect(split(spec, { token: read.token }, stored).orphans).toHaveLength(2);
  });

  it("another config's masks (another actor, another workspace) name nothing here: INVALID_ARGUMENT, never that secret", () => {
    const other = split(spec, { applications: [{ app_api_key: 'theirs' }] }, { newBaseCoordinate: () => 'coffer_workspace_other_secret_theirs' });
    const theirs = (mask(spec, other.partialConfig) as { applications: { app_api_key: string }[] }).applications[0]!.app_api_key;
    const mine = split(spec, { applications: [{ app_api_key: 'mine' }] }, { newBaseCoordinate });
    const err = errorOf(() => split(spec, { applications: [{ app_api_key: theirs }] }, { stored: mine.partialConfig, newBaseCoordinate }));
    expect(err.path).toBe('$.applications[0].app_api_key');
    expect(err.message).not.toContain('coffer_workspace');
    expect(errorOf(() => split(spec, { applications: [{ app_api_key: theirs }] }, { newBaseCoordinate })).path).toBe('$.applications[0].app_api_key');
  });

  it('isMask knows the plain mask and the mask with an item reference, nothing else', () => {
    expect([SECRET_MASK, `${SECRET_MASK}#0123456789abcdef`].map(isMask)).toEqual([true, true]);
    expect([`${SECRET_MASK}#0123`, `${SECRET_MASK}x`, '*********', null, 7].map(isMask)).toEqual([false, false, false, false, false]);
  });
});

describe('property: removals, insertions, reorderings and edits of array items with masks never move a secret to another item', () => {
  interface Model {
    /** The full config the user means: what hydrating the stored partial config must give. */
    expected: Obj;
    /** What the client sends: the read's masks for kept secrets, values for new ones. */
    submitted: Obj;
  }

  let counter = 0;
  const fresh = (label: string) => `${label}-${++counter}`;
  let bases = 0;
  const newBaseCoordinate = () => `coffer_workspace_w_secret_p${++bases}`;

  /**
   * Every choice an edit makes is read from a tape of numbers (0 once it runs out), so that a failing
   * case shrinks to a short tape: fewer items, fewer moves, more secrets kept.
   */
  interface Gen {
    pick<T>(options: readonly T[]): T;
    int(max: number): number;
  }
  const tape = (numbers: number[]): Gen => {
    let i = 0;
    const int = (max: number) => (i < numbers.length ? numbers[i++]! % (max + 1) : 0);
    return { int, pick: (options) => options[int(options.length - 1)]! };
  };
  /** A random subset in a random order: removals and reorderings at once. */
  const shuffledSubarray = <T>(g: Gen, xs: T[]): T[] => {
    const out = xs.filter(() => g.int(3) !== 1);
    for (let i = out.length - 1; i > 0; i--) {
      const j = g.int(i);
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  };
  const tapeArb = fc.array(fc.nat({ max: 1000 }), { maxLength: 200 });

  /** A secret field of a kept item: keep it (send the read's mask), give a new value, or drop it. */
  function secretField(g: Gen, key: string, read: Obj | undefined, prior: Obj | undefined, into: Model): void {
    const present = read !== undefined && read[key] !== undefined;
    const choice = g.pick(present ? (['keep', 'new', 'drop'] as const) : (['new', 'drop'] as const));
    if (choice === 'drop') return;
    if (choice === 'keep') {
      into.submitted[key] = read![key];
      into.expected[key] = prior![key];
      return;
    }
    into.submitted[key] = into.expected[key] = fresh(key);
  }

  /** Keeps a random subset of the items in a random order, then inserts new ones at random places. */
  function editList<T>(g: Gen, read: unknown[] | undefined, prior: unknown[] | undefined, keep: (r: T, p: T) => Model, make: () => Model): Model[] | undefined {
    if (read === undefined && g.int(1) === 1) return undefined;
    const pairs = (read ?? []).map((r, i) => ({ r: r as T, p: prior![i] as T }));
    const out = shuffledSubarray(g, pairs).map(({ r, p }) => keep(r, p));
    const inserts = g.int(2);
    for (let i = 0; i < inserts; i++) out.splice(g.int(out.length), 0, make());
    return out;
  }

  function header(g: Gen, read?: Obj, prior?: Obj): Model {
    const m: Model = { expected: {}, submitted: {} };
    m.expected.name = m.submitted.name = read ? read.name : fresh('header');
    secretField(g, 'value', read, prior, m);
    return m;
  }

  function application(g: Gen, read?: Obj, prior?: Obj): Model {
    const m: Model = { expected: {}, submitted: {} };
    m.expected.app_name = m.submitted.app_name = read ? read.app_name : fresh('app');
    secretField(g, 'app_id', read, prior, m);
    secretField(g, 'app_api_key', read, prior, m);
    const headers = editList<Obj>(g, read?.headers as Obj[] | undefined, prior?.headers as Obj[] | undefined, (r, p) => header(g, r, p), () => header(g));
    if (headers) {
      m.expected.headers = headers.map((h) => h.expected);
      m.submitted.headers = headers.map((h) => h.submitted);
    }
    return m;
  }

  /** The next config: from the read of the stored one (masks) and what it stands for (values). */
  function edit(g: Gen, read: Obj, prior: Obj): Model {
    const m: Model = { expected: {}, submitted: {} };
    secretField(g, 'token', read, prior, m);
    const apps = editList<Obj>(g, read.applications as Obj[] | undefined, prior.applications as Obj[] | undefined, (r, p) => application(g, r, p), () => application(g));
    if (apps) {
      m.expected.applications = apps.map((a) => a.expected);
      m.submitted.applications = apps.map((a) => a.submitted);
    }
    const keys = editList<string>(
      g,
      read.keys as string[] | undefined,
      prior.keys as string[] | undefined,
      (r, p) => ({ expected: { v: p }, submitted: { v: r } }),
      () => {
        const v = fresh('key');
        return { expected: { v }, submitted: { v } };
      },
    );
    if (keys) {
      m.expected.keys = keys.map((k) => k.expected.v);
      m.submitted.keys = keys.map((k) => k.submitted.v);
    }
    return m;
  }

  it('hydrating after each of three rounds gives every item its own secret or its new value; no base is held twice; orphans are exactly the dropped coordinates', () => {
    fc.assert(
      fc.property(tapeArb, (numbers) => {
        const g = tape(numbers);
        const store = secretStore();
        let { expected } = edit(g, {}, {});
        let partial = store.record(split(spec, expected, { newBaseCoordinate })).partialConfig;
        expect(hydrate(partial, store.lookup)).toEqual(expected);
        for (let round = 0; round < 3; round++) {
          const read = mask(spec, partial) as Obj;
          expect(JSON.stringify(read)).not.toMatch(/coffer_workspace/);
          const next = edit(g, read, expected);
          const result = store.record(split(spec, next.submitted, { stored: partial, newBaseCoordinate }));
          expect(hydrate(result.partialConfig, store.lookup)).toEqual(next.expected);
          const held = secretCoordinates(result.partialConfig);
          expect(new Set(held.map(baseOf)).size).toBe(held.length);
          const before = secretCoordinates(partial);
          expect([...result.orphans].sort()).toEqual(before.filter((c) => !held.includes(c)).sort());
          partial = result.partialConfig;
          expected = next.expected;
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a plain mask, a duplicated item or a foreign reference anywhere in an item is refused at that path, never applied', () => {
    fc.assert(
      fc.property(tapeArb, (numbers) => {
        const g = tape(numbers);
        const store = secretStore();
        const { expected } = edit(g, {}, {});
        const partial = store.record(split(spec, expected, { newBaseCoordinate })).partialConfig;
        const read = mask(spec, partial) as Obj;
        const next = edit(g, read, expected);
        // Every path in the submission where an item's mask was sent back.
        const masks: string[][] = [];
        const walk = (v: unknown, at: string[]) => {
          if (typeof v === 'string' && v.startsWith(`${SECRET_MASK}#`)) masks.push(at);
          else if (v && typeof v === 'object') for (const [k, c] of Object.entries(v)) walk(c, [...at, k]);
        };
        walk(next.submitted, []);
        fc.pre(masks.length > 0);
        const at = g.pick(masks);
        const pathOf = (keys: string[]) => `$${keys.map((k) => (/^\d+$/.test(k) ? `[${k}]` : `.${k}`)).join('')}`;
        const templateOf = (keys: string[]) => pathOf(keys).replace(/\[\d+\]/g, '[*]');
        const twins = masks.filter((m) => m !== at && templateOf(m) === templateOf(at));
        const how = g.pick(twins.length > 0 ? (['plain', 'foreign', 'malformed', 'duplicate'] as const) : (['plain', 'foreign', 'malformed'] as const));
        const submitted = structuredClone(next.submitted);
        const parentOf = (keys: string[]) => keys.slice(0, -1).reduce((node, k) => node[k] as Record<string, unknown>, submitted as Record<string, unknown>);
        let path = pathOf(at);
        if (how === 'duplicate') {
          // The same item's mask sent twice: the one sorted first keeps it, the other cannot.
          const twin = g.pick(twins);
          parentOf(at)[at.at(-1)!] = parentOf(twin)[twin.at(-1)!];
          path = [pathOf(at), pathOf(twin)].sort()[1]!;
        } else {
          parentOf(at)[at.at(-1)!] = how === 'plain' ? SECRET_MASK : how === 'foreign' ? `${SECRET_MASK}#ffffffffffffffff` : `${SECRET_MASK}#${'g'.repeat(16)}`;
        }
        expect(errorOf(() => split(spec, submitted, { stored: partial, newBaseCoordinate })).path).toBe(path);
      }),
      { numRuns: 300 },
    );
  });
});
