import { describe, expect, it } from 'vitest';
import { baseCoordinate, parseBaseCoordinate, parseCoordinate, versionedCoordinate } from './coordinates';

const ws = '11111111-2222-3333-4444-555555555555';
const id = 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee';

describe('secret coordinates', () => {
  it('round-trips a coordinate', () => {
    const full = versionedCoordinate(baseCoordinate('coffer', ws, id), 12);
    expect(full).toBe(`coffer_workspace_${ws}_secret_${id}_v12`);
    expect(parseCoordinate('coffer', full)).toEqual({ prefix: 'coffer', workspaceId: ws, secretId: id, version: 12, base: `coffer_workspace_${ws}_secret_${id}`, full });
  });

  it('splits at the last _v, so ids may contain _v', () => {
    const parsed = parseCoordinate('airbyte', `airbyte_workspace_${ws}_secret_a_v_b_v3`);
    expect(parsed.secretId).toBe('a_v_b');
    expect(parsed.version).toBe(3);
  });

  it.each([
    ['other prefix', `airbyte_workspace_${ws}_secret_${id}_v1`],
    ['no version', `coffer_workspace_${ws}_secret_${id}`],
    ['version 0', `coffer_workspace_${ws}_secret_${id}_v0`],
    ['negative version', `coffer_workspace_${ws}_secret_${id}_v-1`],
    ['not a number', `coffer_workspace_${ws}_secret_${id}_vx`],
    ['no secret part', `coffer_workspace_${ws}_v1`],
    ['a 100 KB secret id', `coffer_workspace_${ws}_secret_${'x'.repeat(100_000)}_v1`],
  ])('refuses %s', (_name, coordinate) => {
    expect(() => parseCoordinate('coffer', coordinate)).toThrow(/not a secret coordinate/);
    const message = (() => {
      try {
        parseCoordinate('coffer', coordinate);
      } catch (err) {
        return (err as Error).message;
      }
    })();
    expect(message!.length).toBeLessThan(200);
  });

  it('parses a base coordinate', () => {
    expect(parseBaseCoordinate('coffer', `coffer_workspace_${ws}_secret_${id}`)).toMatchObject({ workspaceId: ws, secretId: id });
  });
});
