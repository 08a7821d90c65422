import { describe, expect, it } from 'vitest';
import { compileSpec, jsonPath } from './spec-validation';

const spec = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  type: 'object',
  required: ['url', 'api_token'],
  additionalProperties: false,
  properties: {
    url: { type: 'string', format: 'uri', order: 0 },
    api_token: { type: 'string', airbyte_secret: true, minLength: 12 },
    list: { type: 'array', items: { type: 'object', properties: { key: { type: 'string' } } } },
  },
};

describe('spec validation', () => {
  const compiled = compileSpec(spec);

  it('accepts a config that matches, and a masked secret in place of a stored one', () => {
    expect(() => compiled.validate({ url: 'https://x.test', api_token: 'long-enough-token' }, 'config_json')).not.toThrow();
    expect(() => compiled.validate({ url: 'https://x.test', api_token: '**********' }, 'config_json')).not.toThrow();
  });

  it('names the JSON path of each problem and never quotes the value', () => {
    const secret = 'short-secret';
    let message = '';
    try {
      compiled.validate({ api_token: 12345, extra: secret, list: [{ key: 7 }] }, 'config_json');
    } catch (err) {
      message = (err as Error).message;
      expect((err as { code: string }).code).toBe('invalid_argument');
    }
    expect(message).toContain('$.url is required');
    expect(message).toContain('$.api_token must be string');
    expect(message).toContain('$.extra is not allowed');
    expect(message).toContain('$.list[0].key must be string');
    expect(message).not.toContain(secret);
    expect(message).not.toContain('12345');
  });

  it('refuses a spec that is not a JSON Schema, naming spec_json', () => {
    expect(() => compileSpec({ type: 'no-such-type' })).toThrow(/spec_json is not a valid JSON Schema/);
    expect(() => compileSpec([])).toThrow(/spec_json must be a JSON Schema object/);
    expect(() => compileSpec({ $schema: 'https://example.com/mine', type: 'object' })).toThrow(/\$schema/);
  });

  it('writes JSON paths the way the secret paths are written', () => {
    expect(jsonPath('/a/b/0/c')).toBe('$.a.b[0].c');
    expect(jsonPath('/odd key', 'x')).toBe('$["odd key"].x');
  });

  it('keeps paths and the message short: long keys by their start, at most five problems listed', () => {
    const longKey = 'k'.repeat(200);
    expect(jsonPath(`/${longKey}/a`)).toBe(`$["${'k'.repeat(48)}…"].a`);
    const strict = compileSpec({ type: 'object', additionalProperties: false, properties: {} });
    const config = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`${i}-${longKey}`, i]));
    let err: { message: string; details: unknown[] } | undefined;
    try {
      strict.validate(config, 'config_json');
    } catch (e) {
      err = e as typeof err;
    }
    expect(err!.details).toHaveLength(50);
    expect(err!.message).toMatch(/; and 45 more$/);
    expect(err!.message.length).toBeLessThan(1024);
  });
});
