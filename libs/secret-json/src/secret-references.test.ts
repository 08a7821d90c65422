import { describe, expect, it } from 'vitest';
import { replaceSecretReference, secretReferences } from './index';

const spec = {
  type: 'object',
  properties: {
    host: { type: 'string' },
    password: { type: 'string', airbyte_secret: true },
    keys: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, key: { type: 'string', airbyte_secret: true } } } },
  },
};
const ref = (c: string) => ({ _secret: c });

describe('secretReferences', () => {
  it('lists each reference at a secret position with its concrete path, sorted', () => {
    const partial = { host: 'h', password: ref('p_v2'), keys: [{ name: 'a', key: ref('k1_v1') }, { name: 'b', key: ref('k2_v3') }] };
    expect(secretReferences(spec, partial)).toEqual([
      { path: '$.keys[0].key', coordinate: 'k1_v1' },
      { path: '$.keys[1].key', coordinate: 'k2_v3' },
      { path: '$.password', coordinate: 'p_v2' },
    ]);
  });

  it('ignores plaintext at secret positions and references outside them', () => {
    expect(secretReferences(spec, { password: 'plain', host: ref('stray_v1') })).toEqual([]);
  });
});

describe('replaceSecretReference', () => {
  it('swaps one coordinate for another and leaves the rest as it was', () => {
    const partial = { host: 'h', password: ref('p_v2'), keys: [{ name: 'a', key: ref('k1_v1') }] };
    expect(replaceSecretReference(partial, 'p_v2', 'p_v3')).toEqual({ host: 'h', password: ref('p_v3'), keys: [{ name: 'a', key: ref('k1_v1') }] });
    expect(partial.password).toEqual(ref('p_v2'));
  });

  it('changes nothing when the coordinate is not referenced', () => {
    const partial = { password: ref('p_v2') };
    expect(replaceSecretReference(partial, 'other_v1', 'other_v2')).toEqual(partial);
  });
});
