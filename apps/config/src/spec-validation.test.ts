import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { compileSpec, jsonPath, lenientSchema, linearPattern } from './spec-validation';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const specsDir = join(process.env.COFFER_CONFORMANCE_DIR ?? resolve(repoRoot, '../shared/conformance'), 'connector-specs');
const specFiles = existsSync(specsDir) ? readdirSync(specsDir).filter((f) => f.endsWith('.spec.json')).sort() : [];

/** The `invalid_argument` a call throws, or undefined. */
function refusal(f: () => unknown): { code: string; message: string; details: { field: string; reason: string }[] } | undefined {
  try {
    f();
  } catch (err) {
    return err as never;
  }
  return undefined;
}

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

describe('specs Airbyte accepts register: lenient on annotations and duplicates', () => {
  it('duplicates in required, enum and type register and still mean the same set', () => {
    const compiled = compileSpec({
      type: 'object',
      required: ['host', 'host', 'port'],
      properties: { host: { type: ['string', 'string'] }, port: { type: 'integer' }, mode: { type: 'string', enum: ['a', 'b', 'a', { x: 1, y: 2 }, { y: 2, x: 1 }] } },
      dependencies: { port: ['host', 'host'] },
    });
    expect(() => compiled.validate({ host: 'h', port: 1, mode: 'b' }, 'config_json')).not.toThrow();
    expect(() => compiled.validate({ port: 1 }, 'config_json')).toThrow(/\$\.host is required/);
    expect(() => compiled.validate({ host: 'h', port: 1, mode: 'c' }, 'config_json')).toThrow(/\$\.mode must be equal to one of the allowed values/);
    expect(() => compiled.validate({ host: 7, port: 1 }, 'config_json')).toThrow(/\$\.host must be string/);
  });

  it('annotations of the wrong type register and change nothing: examples not an array, a title or description not a string', () => {
    const spec = {
      type: 'object',
      title: 42,
      properties: {
        start_date: { type: 'string', examples: '2024-01-01', pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' },
        region: { type: 'string', examples: { eu: 'eu-west-1' }, description: ['a', 'list'], $comment: 7 },
        // A property named like an annotation is a property, not an annotation.
        title: { type: 'string', examples: ['kept'] },
      },
      required: ['title'],
    };
    const compiled = compileSpec(spec);
    expect(() => compiled.validate({ title: 't', start_date: '2024-01-01', region: 'x' }, 'config_json')).not.toThrow();
    expect(() => compiled.validate({ start_date: '01/01/2024' }, 'config_json')).toThrow(/\$\.start_date must match pattern/);
    expect(() => compiled.validate({}, 'config_json')).toThrow(/\$\.title is required/);
    expect(lenientSchema(spec)).toEqual({
      type: 'object',
      properties: { start_date: { type: 'string', pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' }, region: { type: 'string' }, title: { type: 'string', examples: ['kept'] } },
      required: ['title'],
    });
  });

  it('the same leniency reaches every nested schema: items, oneOf branches, definitions behind a $ref', () => {
    const compiled = compileSpec({
      type: 'object',
      definitions: { key: { type: 'object', required: ['k', 'k'], properties: { k: { type: 'string', examples: 'x' } } } },
      properties: {
        list: { type: 'array', items: { $ref: '#/definitions/key' } },
        auth: { oneOf: [{ type: 'object', required: ['a', 'a'], properties: { a: { enum: ['x', 'x'] } } }, { type: 'object', required: ['b'] }] },
      },
    });
    expect(() => compiled.validate({ list: [{ k: 'v' }], auth: { a: 'x' } }, 'config_json')).not.toThrow();
    expect(() => compiled.validate({ list: [{}] }, 'config_json')).toThrow(/\$\.list\[0\]\.k is required/);
  });

  it('still refuses a schema that cannot validate anything: not an object, an unknown type, an empty enum, an unresolvable $ref', () => {
    expect(refusal(() => compileSpec('{"type":"object"}'))).toMatchObject({ code: 'invalid_argument', details: [{ field: 'spec_json', reason: 'not an object' }] });
    for (const spec of [
      { type: 'object', properties: { a: { type: 'strin' } } },
      { type: 'object', properties: { a: { enum: [] } } },
      { type: 'object', properties: { a: { $ref: '#/definitions/missing' } } },
      { type: 'object', required: 'a' },
    ]) {
      expect(refusal(() => compileSpec(spec))).toMatchObject({ code: 'invalid_argument', details: [{ field: 'spec_json', reason: 'invalid schema' }] });
    }
  });

  it.skipIf(specFiles.length === 0)('compiles all 40 real connector specs of the conformance data', () => {
    expect(specFiles).toHaveLength(40);
    for (const f of specFiles) {
      const spec = (JSON.parse(readFileSync(join(specsDir, f), 'utf8')) as { connectionSpecification: unknown }).connectionSpecification;
      expect(refusal(() => compileSpec(spec)), f).toBeUndefined();
    }
  });
});

describe('patterns are read as Java reads them (Airbyte validates with java.util.regex)', () => {
  const matches = (pattern: string, values: string[]) => values.map((v) => linearPattern(pattern).test(v));

  it('accepts the escapes ECMAScript u-mode refuses: \\- \\_ \\@ \\# outside a class, and each keeps its meaning', () => {
    expect(matches('^[a-z]+\\-[0-9]+$', ['ab-12', 'ab12'])).toEqual([true, false]);
    expect(matches('^a\\_b\\@c\\#d\\ e$', ['a_b@c#d e', 'a_b@c#de'])).toEqual([true, false]);
    const compiled = compileSpec({ type: 'object', properties: { id: { type: 'string', pattern: '^[A-Z]{2}\\-\\d+$' } }, patternProperties: { '^x\\-[a-z]+$': { type: 'integer' } } });
    expect(() => compiled.validate({ id: 'AB-12', 'x-y': 3 }, 'config_json')).not.toThrow();
    expect(() => compiled.validate({ id: 'AB12' }, 'config_json')).toThrow(/\$\.id must match pattern/);
    expect(() => compiled.validate({ 'x-y': 'no' }, 'config_json')).toThrow(/must be integer/);
  });

  it('knows Java-only syntax: POSIX \\p{…}, \\Q…\\E, \\Z, \\h, \\e, octal, (?i), named groups, nested class unions', () => {
    expect(matches('^\\p{Alpha}+$', ['abc', 'ab1', 'é'])).toEqual([true, false, false]);
    expect(matches('^\\p{Punct}\\P{Digit}$', ['!a', '!1'])).toEqual([true, false]);
    expect(matches('^a\\Q.*\\E$', ['a.*', 'abc'])).toEqual([true, false]);
    expect(matches('^ab\\Z', ['ab', 'ab\n', 'abc'])).toEqual([true, true, false]);
    expect(matches('^\\h\\e$', ['\u00a0\u001b', ' x'])).toEqual([true, false]);
    expect(matches('^\\0101\\x42\\x{43}\\u0044\\uD83D\\uDE00$', ['ABCD😀'])).toEqual([true]);
    expect(matches('(?i)^abc$', ['ABC', 'abd'])).toEqual([true, false]);
    expect(matches('^(?<year>\\d{4})-\\d{2}$', ['2024-01', '24-01'])).toEqual([true, false]);
    expect(matches('^[a-z[0-9]]+$', ['a1', 'A'])).toEqual([true, false]);
    // Java's [a[-z]] is a, - and z: flattening must not make it the range a-z.
    expect(matches('^[a[-z]]$', ['-', 'z', 'm'])).toEqual([true, true, false]);
    // Java's \s includes the vertical tab.
    expect(matches('^\\s$', ['\u000b', 'x'])).toEqual([true, false]);
  });

  it('refuses, naming the path and why, what Java refuses or RE2 cannot run', () => {
    for (const [pattern, why] of [
      ['^(a)\\1$', /backreference/],
      ['^a++$', /possessive/],
      ['^(?>a)$', /atomic/],
      ['^[a-z&&[^e]]$', /intersection/],
      ['^\\y$', /not an escape Java knows/],
      ['(?x) a b', /comments mode/],
      ['^\\p{InGreek}$', /Unicode block/],
      ['^[a-z$', /unclosed character class/],
    ] as const) {
      const err = refusal(() => compileSpec({ type: 'object', properties: { a: { type: 'string', pattern } } }));
      expect(err, pattern).toMatchObject({ code: 'invalid_argument', details: [{ field: 'spec_json:$.properties.a.pattern', reason: 'unsupported pattern' }] });
      expect(err!.message, pattern).toMatch(why);
    }
  });
});
