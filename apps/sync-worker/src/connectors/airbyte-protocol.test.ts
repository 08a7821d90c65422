import { describe, expect, it } from 'vitest';
import { configureCatalog, isStateMessage, parseMessage, recordKey, stateFileContent, stateKey } from './airbyte-protocol';

describe('the Airbyte protocol helpers', () => {
  it('configures a stream incremental when it supports it and names a cursor, and upserts it when it has a primary key', () => {
    const catalog = configureCatalog([
      { name: 'a', json_schema: {}, supported_sync_modes: ['full_refresh', 'incremental'], source_defined_cursor: true, default_cursor_field: ['updated_at'], source_defined_primary_key: [['id']] },
      { name: 'b', json_schema: {}, supported_sync_modes: ['full_refresh', 'incremental'] },
      { name: 'c', json_schema: {}, supported_sync_modes: ['full_refresh'], default_cursor_field: ['x'] },
    ]);
    expect(catalog.streams.map((s) => [s.stream.name, s.sync_mode, s.cursor_field, s.destination_sync_mode, s.primary_key])).toEqual([
      ['a', 'incremental', ['updated_at'], 'append_dedup', [['id']]],
      ['b', 'full_refresh', [], 'append', []],
      ['c', 'full_refresh', [], 'append', []],
    ]);
  });

  it('keys a STREAM state by namespace and name, and a legacy or global state under one slot', () => {
    expect(stateKey({ type: 'STREAM', stream: { stream_descriptor: { name: 'items', namespace: 'shop' }, stream_state: { cursor: 3 } } })).toEqual({ namespace: 'shop', stream: 'items' });
    expect(stateKey({ data: { cursor: 1 } })).toEqual({ namespace: '', stream: '' });
    expect(stateKey({ type: 'GLOBAL', global: {} })).toEqual({ namespace: '', stream: '' });
  });

  it('accepts only states it can keep', () => {
    expect(isStateMessage({ type: 'STREAM', stream: { stream_descriptor: { name: 'x' } } })).toBe(true);
    expect(isStateMessage({ type: 'STREAM' })).toBe(false);
    expect(isStateMessage({ data: {} })).toBe(true);
    expect(isStateMessage({})).toBe(false);
    expect(isStateMessage([])).toBe(false);
  });

  it('writes per-stream states as a list and a lone legacy state as its blob', () => {
    const stream = { type: 'STREAM' as const, stream: { stream_descriptor: { name: 'x' }, stream_state: { c: 1 } } };
    expect(stateFileContent([stream])).toEqual([stream]);
    expect(stateFileContent([{ data: { c: 2 } }])).toEqual({ c: 2 });
  });

  it("keys a record by its primary key's values, nested paths included; a missing field has no key", () => {
    expect(recordKey({ id: 1, org: { id: 'a' } }, [['id'], ['org', 'id']])).toBe('[1,"a"]');
    expect(recordKey({ id: 1 }, [['id'], ['org', 'id']])).toBeUndefined();
  });

  it('parses protocol lines and leaves other output alone', () => {
    expect(parseMessage('{"type":"LOG","log":{"level":"INFO","message":"hi"}}')).toMatchObject({ type: 'LOG' });
    expect(parseMessage('plain text')).toBeUndefined();
    expect(parseMessage('{"no":"type"}')).toBeUndefined();
    expect(parseMessage('{broken')).toBeUndefined();
  });
});
