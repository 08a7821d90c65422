import { describe, expect, it } from 'vitest';
import { mask, split } from '@coffer/secret-json';
import { atNextVersions } from './next-versions';

const spec = {
  type: 'object',
  properties: {
    token: { type: 'string', airbyte_secret: true },
    keys: { type: 'array', items: { type: 'object', properties: { key: { type: 'string', airbyte_secret: true } } } },
    fresh: { type: 'string', airbyte_secret: true },
  },
};
const base = (n: number) => `coffer_workspace_w_secret_${n}`;
const stored = { token: { _secret: `${base(1)}_v2` }, keys: [{ key: { _secret: `${base(2)}_v1` } }, { key: { _secret: `${base(3)}_v4` } }] };

describe('atNextVersions', () => {
  it('moves a write past the version secrets already holds, and its reference with it', () => {
    // The first item is sent back as read (its mask names its item), the second with a new value.
    const read = mask(spec, stored) as { keys: { key: string }[] };
    const planned = split(spec, { token: 'new-token', keys: [{ key: read.keys[0]!.key }, { key: 'new-key' }], fresh: 'new-fresh' }, { stored, newBaseCoordinate: () => base(9) });
    expect(planned.writes.map((w) => w.coordinate)).toEqual([`${base(9)}_v1`, `${base(3)}_v5`, `${base(1)}_v3`]);

    // A lost write took v3 of base 1 and v7 of base 3; base 9 is new.
    const moved = atNextVersions(planned, new Map([[base(1), 3], [base(3), 7], [base(9), 0]]));
    expect(moved.writes.map((w) => [w.coordinate, w.version, w.value])).toEqual([
      [`${base(9)}_v1`, 1, 'new-fresh'],
      [`${base(3)}_v8`, 8, 'new-key'],
      [`${base(1)}_v4`, 4, 'new-token'],
    ]);
    expect(moved.partialConfig).toEqual({
      token: { _secret: `${base(1)}_v4` },
      keys: [{ key: { _secret: `${base(2)}_v1` } }, { key: { _secret: `${base(3)}_v8` } }],
      fresh: { _secret: `${base(9)}_v1` },
    });
    expect(moved.orphans).toEqual(planned.orphans);
  });

  it('keeps the plan when secrets holds nothing newer than the stored version', () => {
    const planned = split(spec, { token: 'new-token' }, { stored, newBaseCoordinate: () => base(9) });
    expect(atNextVersions(planned, new Map([[base(1), 2]]))).toBe(planned);
    expect(atNextVersions(planned, new Map())).toBe(planned);
  });
});
