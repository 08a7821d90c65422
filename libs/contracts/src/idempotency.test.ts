import { describe, expect, it } from 'vitest';
import { CofferError } from './errors';
import { createOnce, idempotentId, requestIdOf, uuidV5 } from './idempotency';

describe('request_id', () => {
  it('derives RFC 9562 version-5 UUIDs (the RFC example: DNS namespace, www.example.com)', () => {
    expect(uuidV5('6ba7b810-9dad-11d1-80b4-00c04fd430c8', 'www.example.com')).toBe('2ed6657d-e927-568b-95e1-2665a8aea6a2');
  });

  it('names one entity per (scope, method, key), and another for any other scope, method or key', () => {
    const id = idempotentId('ws-1', 'CreateActor', 'k-1');
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(idempotentId('ws-1', 'CreateActor', 'k-1')).toBe(id);
    const others = [idempotentId('ws-2', 'CreateActor', 'k-1'), idempotentId('ws-1', 'CreateConnection', 'k-1'), idempotentId('ws-1', 'CreateActor', 'k-2')];
    expect(new Set([id, ...others]).size).toBe(4);
    // Parts never run into each other: ("a,b", "c") and ("a", "b,c") are two scopes.
    expect(idempotentId('a","b', 'M', 'c')).not.toBe(idempotentId('a', 'M', 'b","c'));
  });

  it('takes unset or empty as no key, and refuses one out of bounds naming request_id without quoting it', () => {
    expect(requestIdOf(undefined)).toBeUndefined();
    expect(requestIdOf('')).toBeUndefined();
    expect(requestIdOf('6f1c2a9e-0b7d-4c5e-8f3a-1d2e3f4a5b6c')).toBe('6f1c2a9e-0b7d-4c5e-8f3a-1d2e3f4a5b6c');
    expect(requestIdOf('a'.repeat(128))).toHaveLength(128);
    for (const bad of ['a'.repeat(129), 'has space', 'new\nline', 'semi;colon', 'é', 'slash/']) {
      let caught: unknown;
      try {
        requestIdOf(bad);
      } catch (err) {
        caught = err;
      }
      expect(caught).toMatchObject({ code: 'invalid_argument', details: [{ field: 'request_id', reason: 'invalid' }] });
      expect((caught as Error).message).not.toContain(bad);
    }
  });
});

describe('createOnce', () => {
  // A stand-in for a stream store: an entity is created once per id, a second create conflicts.
  function entities() {
    const made = new Map<string, string>();
    let creates = 0;
    return {
      made,
      creates: () => creates,
      options: (requestId: string | undefined, value: string, scope = 'ws') => ({
        requestId,
        scope,
        method: 'CreateThing',
        newId: () => `fresh-${made.size + creates}`,
        firstResult: async (id: string) => made.get(id),
        create: async (id: string) => {
          creates++;
          await new Promise((r) => setTimeout(r, 1));
          if (made.has(id)) throw new CofferError('version_conflict', 'exists');
          made.set(id, value);
          return value;
        },
      }),
    };
  }

  it('creates every time without a key', async () => {
    const e = entities();
    await createOnce(e.options(undefined, 'a'));
    await createOnce(e.options('', 'b'));
    expect(e.made.size).toBe(2);
  });

  it('answers a repeat with the first result without creating; racing repeats answer the winner', async () => {
    const e = entities();
    expect(await createOnce(e.options('k', 'first'))).toBe('first');
    expect(await createOnce(e.options('k', 'second'))).toBe('first');
    expect(e.creates()).toBe(1);
    const raced = await Promise.all(Array.from({ length: 8 }, (_, i) => createOnce(e.options('r', `v${i}`))));
    expect(new Set(raced).size).toBe(1);
    expect(e.made.size).toBe(2);
  });

  it('keeps scopes apart, and passes on a conflict that no first result explains', async () => {
    const e = entities();
    await createOnce(e.options('k', 'a', 'ws-1'));
    expect(await createOnce(e.options('k', 'b', 'ws-2'))).toBe('b');
    const failing = { ...e.options('z', 'c'), create: async () => Promise.reject(new CofferError('version_conflict', 'other writer')) };
    await expect(createOnce(failing)).rejects.toMatchObject({ code: 'version_conflict' });
    await expect(createOnce(e.options('bad key', 'd'))).rejects.toMatchObject({ code: 'invalid_argument' });
  });
});
