import { describe, expect, it } from 'vitest';
import { SECRET_MASK, SecretJsonError, ownSecretCoordinates, split } from './index';

const foreign = 'coffer_workspace_00000000-0000-0000-0000-000000000000_secret_6f1c2d4e-0000-4000-8000-000000000001_v1';
const ref = { _secret: foreign };
let n = 0;
const newBaseCoordinate = () => `coffer_workspace_w_secret_s${++n}`;

const strict = {
  type: 'object',
  properties: {
    url: { type: 'string' },
    api_token: { type: 'string', airbyte_secret: true },
    nested: { type: 'object', properties: { inner: { type: 'string' } } },
    list: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, key: { type: 'string', airbyte_secret: true } } } },
    tags: { type: 'array', items: { type: 'string' } },
    open: { type: 'object', additionalProperties: true },
    auth: {
      oneOf: [
        { type: 'object', properties: { kind: { const: 'token' }, token: { type: 'string', airbyte_secret: true } } },
        { type: 'object', properties: { kind: { const: 'basic' }, user: { type: 'string' } } },
      ],
    },
  },
};
const loose = { type: 'object', properties: { url: { type: 'string' } } };

function refusal(spec: unknown, config: unknown, stored?: unknown): SecretJsonError {
  try {
    split(spec, config, { stored, newBaseCoordinate });
  } catch (err) {
    expect(err).toBeInstanceOf(SecretJsonError);
    expect((err as Error).message).not.toContain(foreign);
    return err as SecretJsonError;
  }
  throw new Error('split accepted an injected secret reference');
}

describe('a secret reference the caller sends is refused wherever it is', () => {
  const cases: [string, unknown, unknown, string][] = [
    ['an extra property', strict, { url: 'u', extra: ref }, '$.extra'],
    ['a known non-secret field', strict, { url: ref }, '$.url'],
    ['a nested object', strict, { nested: { inner: ref } }, '$.nested.inner'],
    ['deep inside an extra object', strict, { extra: { a: { b: ref } } }, '$.extra.a.b'],
    ['an array item', strict, { tags: ['a', ref] }, '$.tags[1]'],
    ['a non-secret field of an array item', strict, { list: [{ name: ref, key: 'k' }] }, '$.list[0].name'],
    ['an open object (additionalProperties)', strict, { open: { anything: ref } }, '$.open.anything'],
    ['the non-secret branch of a oneOf', strict, { auth: { kind: 'basic', user: ref } }, '$.auth.user'],
    ['a field of a loose spec', loose, { url: 'u', token: ref }, '$.token'],
    ['the root of a loose spec, with other keys', loose, { _secret: foreign, url: 'u' }, '$'],
    ['an object with _secret and other keys', strict, { nested: { _secret: foreign, x: 1 } }, '$.nested'],
    ['a secret field', strict, { api_token: ref }, '$.api_token'],
    ['a secret field inside an array', strict, { list: [{ name: 'n', key: ref }] }, '$.list[0].key'],
    ['a secret field, with other keys', strict, { api_token: { _secret: foreign, x: 1 } }, '$.api_token'],
  ];
  for (const [what, spec, config, path] of cases) {
    it(`at ${what}`, () => {
      expect(refusal(spec, config).path).toBe(path);
    });
  }

  it('also on an update whose stored config holds a coordinate there', () => {
    const first = split(strict, { api_token: 't' }, { newBaseCoordinate });
    const own = (first.partialConfig as { api_token: { _secret: string } }).api_token;
    expect(refusal(strict, { api_token: SECRET_MASK, extra: own }, first.partialConfig).path).toBe('$.extra');
    expect(refusal(strict, { api_token: own }, first.partialConfig).path).toBe('$.api_token');
  });

  it('a mask only keeps a coordinate stored at a secret position, never one stored elsewhere', () => {
    const legacy = { open: { x: ref } };
    expect(() => split({ ...strict, properties: { ...strict.properties, open: { type: 'object', properties: { x: { type: 'string', airbyte_secret: true } } } } }, { open: { x: SECRET_MASK } }, { stored: legacy, newBaseCoordinate })).not.toThrow();
    const r = split(strict, { url: 'u' }, { stored: { url: 'u', extra: ref }, newBaseCoordinate });
    expect(r.orphans).toEqual([]);
  });

  it('ownSecretCoordinates lists only the coordinates at secret positions of the spec', () => {
    const partial = { api_token: { _secret: 'coffer_workspace_w_secret_a_v1' }, extra: ref, open: { k: ref }, list: [{ key: { _secret: 'coffer_workspace_w_secret_b_v2' } }] };
    expect(ownSecretCoordinates(strict, partial).sort()).toEqual(['coffer_workspace_w_secret_a_v1', 'coffer_workspace_w_secret_b_v2']);
  });

  it('a mask and a new value are still accepted at a secret position', () => {
    const first = split(strict, { api_token: 't', list: [{ key: 'k' }] }, { newBaseCoordinate });
    const second = split(strict, { api_token: SECRET_MASK, list: [{ key: 'k2' }], open: { a: { b: 1 } } }, { stored: first.partialConfig, newBaseCoordinate });
    expect(second.writes.map((w) => w.path)).toEqual(['$.list[0].key']);
  });
});
