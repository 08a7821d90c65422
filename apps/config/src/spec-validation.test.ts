import { describe, expect, it } from 'vitest';
import { compileSpec, jsonPath, linearPattern } from './spec-validation';

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

describe('patterns run in linear time (RE2)', () => {
  it('answers a catastrophic-backtracking pattern at once', () => {
    const compiled = compileSpec({ type: 'object', properties: { name: { type: 'string', pattern: '^(a+)+$' } } });
    const started = performance.now();
    expect(() => compiled.validate({ name: `${'a'.repeat(30)}!` }, 'config_json')).toThrow(/\$\.name must match pattern/);
    expect(() => compiled.validate({ name: 'a'.repeat(30) }, 'config_json')).not.toThrow();
    expect(performance.now() - started).toBeLessThan(100);
  });

  it('keeps patternProperties apart, and ECMAScript escapes (\\-, \\u00e9, \\/) working', () => {
    const compiled = compileSpec({
      type: 'object',
      properties: { slug: { type: 'string', pattern: '^[a-z0-9\\-]+$' }, accent: { type: 'string', pattern: '^\\u00e9\\/$' } },
      patternProperties: { '^x_[0-9]+$': { type: 'integer' }, '^y_': { type: 'string' } },
    });
    expect(() => compiled.validate({ slug: 'a-b-1', accent: 'é/', x_1: 3, y_z: 'v' }, 'config_json')).not.toThrow();
    expect(() => compiled.validate({ slug: 'A b' }, 'config_json')).toThrow(/\$\.slug must match pattern/);
    expect(() => compiled.validate({ accent: 'e/' }, 'config_json')).toThrow(/\$\.accent must match pattern/);
    expect(() => compiled.validate({ x_1: 'no' }, 'config_json')).toThrow(/\$\.x_1 must be integer/);
    expect(() => compiled.validate({ y_z: 1 }, 'config_json')).toThrow(/\$\.y_z must be string/);
  });

  it('keeps the lookarounds of real connector specs: lookbehinds, and lookaheads right after ^', () => {
    const repo = linearPattern('^[\\w.-]+/(([\\w.-]*\\*)|[\\w.-]+(?<!\\.git))$');
    expect(['airbytehq/airbyte', 'a/*'].map((s) => repo.test(s))).toEqual([true, true]);
    expect(repo.test('airbytehq/airbyte.git')).toBe(false);
    const notReserved = linearPattern('^(?!(cohort_|RESERVED_)).*$');
    expect([notReserved.test('users'), notReserved.test('cohort_1'), notReserved.test('RESERVED_x')]).toEqual([true, false, false]);
    const twice = linearPattern('^(?!https://)(?=h)(?!http://).*');
    expect([twice.test('host'), twice.test('https://x'), twice.test('http://x'), twice.test('x')]).toEqual([true, false, false, false]);
    expect(linearPattern('^(?!a|b)(c|d)').test('c')).toBe(true);
    // A lookahead that binds one alternative only cannot be split off: refused.
    expect(() => linearPattern('^(?!a)x|y')).toThrow();
  });

  it('refuses at compile time a pattern RE2 cannot run, naming its path', () => {
    for (const [spec, path] of [
      [{ type: 'object', properties: { a: { type: 'string', pattern: '^(a)\\1$' } } }, 'spec_json:$.properties.a.pattern'],
      [{ type: 'object', properties: { a: { type: 'string', pattern: 'x(?=y)' } } }, 'spec_json:$.properties.a.pattern'],
      [{ type: 'object', patternProperties: { '^(?!a)b(?=c)': {} } }, 'spec_json:$.patternProperties'],
    ] as const) {
      let err: unknown;
      try {
        compileSpec(spec);
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ code: 'invalid_argument', details: [{ field: path, reason: 'unsupported pattern' }] });
    }
  });

  it('refuses a spec nested deeper than 64 levels as invalid_argument', () => {
    let deep: Record<string, unknown> = { type: 'string' };
    for (let i = 0; i < 10_000; i++) deep = { type: 'object', properties: { a: deep } };
    expect(() => compileSpec(deep)).toThrow(/spec_json is nested deeper than 64 levels/);
  });
});

describe('the mask', () => {
  const masked = compileSpec({
    type: 'object',
    properties: {
      port: { type: 'integer' },
      host: { type: 'string', pattern: '^[a-z.]+$' },
      token: { type: 'string', airbyte_secret: true, minLength: 20 },
      keys: { type: 'array', items: { type: 'string', airbyte_secret: true, minLength: 20 } },
      pins: { type: 'array', items: { type: 'string', airbyte_secret: true, pattern: '^[0-9]{4}$' } },
    },
  });

  it('counts as present at a secret position, inside arrays too, with its item reference', () => {
    expect(() => masked.validate({ token: '**********', keys: ['**********'], pins: ['**********#0123456789abcdef'] }, 'config_json')).not.toThrow();
    expect(() => masked.validate({ pins: ['**********#not-a-reference'] }, 'config_json')).toThrow(/\$\.pins\[0\] must match pattern/);
  });

  it('is validated like any other value in a field that is not a secret', () => {
    expect(() => masked.validate({ port: '**********' }, 'config_json')).toThrow(/\$\.port must be integer/);
    expect(() => masked.validate({ host: '**********' }, 'config_json')).toThrow(/\$\.host must match pattern/);
  });
});
