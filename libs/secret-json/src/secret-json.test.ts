import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SECRET_MASK, SecretJsonError, hydrate, isSecretReference, mask, secretCoordinates, secretPaths, secretValues, split } from './index';

const spec = {
  type: 'object',
  properties: {
    host: { type: 'string' },
    password: { type: 'string', airbyte_secret: true },
    keys: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, key: { type: 'string', airbyte_secret: true } } } },
    auth: {
      oneOf: [
        { type: 'object', properties: { kind: { const: 'token' }, token: { type: 'string', airbyte_secret: true } } },
        { type: 'object', properties: { kind: { const: 'basic' }, user: { type: 'string' }, pass: { type: 'string', airbyte_secret: true } } },
      ],
    },
  },
};

let n = 0;
const newBaseCoordinate = () => `coffer_workspace_w_secret_s${++n}`;

describe('secret-json', () => {
  it('finds secret path templates through properties, items and oneOf branches', () => {
    expect(secretPaths(spec)).toEqual(['$.auth.pass', '$.auth.token', '$.keys[*].key', '$.password']);
  });

  it('a masked secret keeps its stored coordinate, inside arrays too; a new value bumps the version', () => {
    const first = split(spec, { host: 'h', password: 'p1', keys: [{ name: 'a', key: 'k1' }, { name: 'b', key: 'k2' }] }, { newBaseCoordinate });
    const stored = first.partialConfig as { password: { _secret: string }; keys: { key: { _secret: string } }[] };
    const read = mask(spec, stored) as { keys: { key: string }[] };
    expect(read.keys[0]!.key).toMatch(/^\*{10}#[0-9a-f]{16}$/);
    const second = split(spec, { host: 'h', password: SECRET_MASK, keys: [{ name: 'a', key: read.keys[0]!.key }, { name: 'b', key: 'k2-new' }] }, { stored, newBaseCoordinate });
    const next = second.partialConfig as typeof stored;
    expect(next.password._secret).toBe(stored.password._secret);
    expect(next.keys[0]!.key._secret).toBe(stored.keys[0]!.key._secret);
    expect(next.keys[1]!.key._secret).toBe(stored.keys[1]!.key._secret.replace(/_v1$/, '_v2'));
    expect(second.writes).toEqual([
      expect.objectContaining({ path: '$.keys[1].key', version: 2, value: 'k2-new', baseCoordinate: stored.keys[1]!.key._secret.replace(/_v1$/, '') }),
    ]);
    expect(second.orphans).toEqual([stored.keys[1]!.key._secret]);
  });

  it('refuses a mask where nothing is stored and a submitted reference, naming the path only', () => {
    expect(() => split(spec, { password: SECRET_MASK }, { newBaseCoordinate })).toThrow(SecretJsonError);
    expect(() => split(spec, { password: SECRET_MASK }, { newBaseCoordinate })).toThrow(/^\$\.password is masked/);
    expect(() => split(spec, { password: { _secret: 'coffer_workspace_other_secret_x_v1' } }, { newBaseCoordinate })).toThrow(/\$\.password is a secret reference/);
  });

  it('does not modify its inputs', () => {
    const config = { password: 'p', keys: [{ key: 'k' }] };
    const copy = structuredClone(config);
    split(spec, config, { newBaseCoordinate });
    mask(spec, config);
    expect(config).toEqual(copy);
  });

  it('masks both plaintext and stored references; hydrates and lists references', () => {
    const partial = { password: { _secret: 'c_v1' }, keys: [{ key: 'plain' }] };
    expect(mask(spec, partial)).toEqual({ password: SECRET_MASK, keys: [{ key: SECRET_MASK }] });
    expect(secretCoordinates(partial)).toEqual(['c_v1']);
    expect(hydrate(partial, (c) => `value-of-${c}`)).toEqual({ password: 'value-of-c_v1', keys: [{ key: 'plain' }] });
    expect(secretValues(partial, { password: 's3cret', keys: [{ key: 'plain' }] })).toEqual(['s3cret']);
    expect(isSecretReference({ _secret: 'x', other: 1 })).toBe(false);
  });

  it('property: split then hydrate gives the config back, and no secret value is left in the partial config or the mask', () => {
    const secretArb = fc.string({ minLength: 8, maxLength: 30 }).map((s) => `secret-${s}`);
    const configArb = fc.record(
      {
        host: fc.string(),
        password: secretArb,
        keys: fc.array(fc.record({ name: fc.string(), key: secretArb }), { maxLength: 4 }),
        auth: fc.oneof(fc.record({ kind: fc.constant('token'), token: secretArb }), fc.record({ kind: fc.constant('basic'), user: fc.string(), pass: secretArb })),
      },
      { requiredKeys: ['host'] },
    );
    fc.assert(
      fc.property(configArb, (config) => {
        const result = split(spec, config, { newBaseCoordinate });
        const values = new Map(result.writes.map((w) => [w.coordinate, w.value]));
        expect(hydrate(result.partialConfig, (c) => values.get(c)!)).toEqual(config);
        const stored = JSON.stringify(result.partialConfig);
        const masked = JSON.stringify(mask(spec, config));
        for (const w of result.writes) {
          expect(stored).not.toContain(w.value);
          expect(masked).not.toContain(w.value);
        }
        expect(secretValues(result.partialConfig, config).sort()).toEqual(result.writes.map((w) => w.value).sort());
      }),
      { numRuns: 200 },
    );
  });
});

describe('depth bound of the reference walks', () => {
  let deep: unknown = { _secret: 'coffer_workspace_w_secret_s_v1' };
  for (let i = 0; i < 10_000; i++) deep = { a: deep };

  it('secretCoordinates and hydrate refuse a partial config nested 10,000 levels with a SecretJsonError, not a stack overflow', () => {
    expect(() => secretCoordinates(deep)).toThrow(SecretJsonError);
    expect(() => secretCoordinates(deep)).toThrow(/nested deeper than 64 levels/);
    expect(() => hydrate(deep, () => 'v')).toThrow(SecretJsonError);
  });

  it('still walks 64 levels', () => {
    let ok: unknown = { _secret: 'coffer_workspace_w_secret_s_v1' };
    for (let i = 0; i < 63; i++) ok = { a: ok };
    expect(secretCoordinates(ok)).toEqual(['coffer_workspace_w_secret_s_v1']);
    expect(JSON.stringify(hydrate(ok, () => 'v'))).toContain('"v"');
  });
});
