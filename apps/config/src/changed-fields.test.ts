import { describe, expect, it } from 'vitest';
import { changedFields, MAX_CHANGED_FIELDS } from './changed-fields';

const ref = (c: string) => ({ _secret: c });

describe('changedFields', () => {
  it('lists every set field of a new config, secrets by path only', () => {
    const fields = changedFields(undefined, { api_token: ref('coffer_workspace_w_secret_a_v1'), base_url: 'https://a', nested: { 'odd key': 1, list: [1, 2] } });
    expect(fields.sort()).toEqual(['$.api_token', '$.base_url', '$.nested.list', '$.nested["odd key"]']);
    expect(JSON.stringify(fields)).not.toContain('_secret');
  });

  it('lists only what changed: a new secret version, a changed value, a removed field', () => {
    const before = { api_token: ref('coffer_workspace_w_secret_a_v1'), base_url: 'https://a', gone: true, same: { x: 1 } };
    const after = { api_token: ref('coffer_workspace_w_secret_a_v2'), base_url: 'https://b', same: { x: 1 } };
    expect(changedFields(before, after).sort()).toEqual(['$.api_token', '$.base_url', '$.gone']);
    expect(changedFields(before, before)).toEqual([]);
  });

  it('names an object that became a value, or a value that became an object', () => {
    expect(changedFields({ a: { b: 1 } }, { a: 2 }).sort()).toEqual(['$.a', '$.a.b']);
    expect(changedFields({ a: 'x' }, { a: { b: 1 } }).sort()).toEqual(['$.a', '$.a.b']);
  });

  it('is bounded in number and length', () => {
    const many = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`f${i}`, i]));
    const fields = changedFields(undefined, many);
    expect(fields).toHaveLength(MAX_CHANGED_FIELDS);
    expect(fields.at(-1)).toBe('$');
    const deep = changedFields(undefined, { ['k'.repeat(200)]: { ['k'.repeat(200)]: 1 } });
    expect(deep[0]!.length).toBeLessThanOrEqual(300);
  });
});
