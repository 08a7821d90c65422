import { describe, expect, it } from 'vitest';
import { nulCharacterField } from './nul-characters';

describe('nulCharacterField', () => {
  it('names the proto path of the first string holding a NUL character', () => {
    expect(nulCharacterField({ workspaceId: 'w', name: 'a\u0000b' })).toBe('name');
    expect(nulCharacterField({ secrets: [{ baseCoordinate: 'ok' }, { baseCoordinate: 'x\u0000' }] })).toBe('secrets[1].base_coordinate');
    expect(nulCharacterField({ page: { pageToken: '\u0000' } })).toBe('page.page_token');
  });

  it('passes requests without one, and bytes fields', () => {
    expect(nulCharacterField({ workspaceId: 'w', ttlSeconds: 3, flag: true, page: undefined, raw: Buffer.from([0, 1]) })).toBeUndefined();
  });
});
