import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SECRET_MASK, hydrate, mask, secretValues, split, type SplitResult } from './index';

/**
 * Specs and matching configs generated together: objects, arrays and oneOf branches nested to a few
 * levels, secrets at any leaf. Each secret value is unique (it carries a counter), so finding it
 * anywhere in the partial config or the mask is a leak.
 */
type Node =
  | { kind: 'secret' }
  | { kind: 'plain' }
  | { kind: 'object'; props: Record<string, Node> }
  | { kind: 'array'; item: Node }
  | { kind: 'oneOf'; branches: Node[] };

const key = fc.constantFrom('a', 'b', 'token', 'password', 'nested', 'list', 'auth', 'odd key', 'x-1');
const nodeArb: fc.Arbitrary<Node> = fc.letrec<{ node: Node }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant<Node>({ kind: 'secret' }),
    fc.constant<Node>({ kind: 'plain' }),
    fc.dictionary(key, tie('node'), { minKeys: 1, maxKeys: 4 }).map((props): Node => ({ kind: 'object', props })),
    tie('node').map((item): Node => ({ kind: 'array', item })),
    fc.array(fc.dictionary(key, tie('node'), { minKeys: 1, maxKeys: 3 }), { minLength: 2, maxLength: 3 }).map(
      (branches): Node => ({ kind: 'oneOf', branches: branches.map((props) => ({ kind: 'object', props })) }),
    ),
  ),
})).node;

function toSchema(node: Node): Record<string, unknown> {
  switch (node.kind) {
    case 'secret':
      return { type: 'string', airbyte_secret: true };
    case 'plain':
      return { type: 'string' };
    case 'object':
      return { type: 'object', properties: Object.fromEntries(Object.entries(node.props).map(([k, v]) => [k, toSchema(v)])) };
    case 'array':
      return { type: 'array', items: toSchema(node.item) };
    case 'oneOf':
      return { type: 'object', oneOf: node.branches.map(toSchema) };
  }
}

let counter = 0;
function configArb(node: Node): fc.Arbitrary<unknown> {
  switch (node.kind) {
    case 'secret':
      return fc.string({ minLength: 4, maxLength: 12 }).map((s) => `secret-${++counter}-${s}`);
    case 'plain':
      return fc.constantFrom('plain', 'value', '', 'secret-lookalike');
    case 'object': {
      const entries = Object.entries(node.props).map(([k, v]) => [k, configArb(v)] as const);
      return fc.record(Object.fromEntries(entries), { requiredKeys: [] });
    }
    case 'array':
      return fc.array(configArb(node.item), { maxLength: 3 });
    case 'oneOf':
      return fc.oneof(...node.branches.map(configArb));
  }
}

const specAndConfig = nodeArb
  .filter((n) => n.kind === 'object' || n.kind === 'oneOf')
  .chain((node) => fc.tuple(fc.constant(toSchema(node)), configArb(node)));

// Only generated secrets are unique. A plain value can be split out too: where oneOf branches
// disagree on whether a field is secret, the union is taken (the safe side), as Airbyte does.
function secretsOf(result: SplitResult): string[] {
  return result.writes.map((w) => w.value).filter((v) => /^secret-\d+-/.test(v));
}

describe('secret-json on generated specs with nested objects, arrays and oneOf', () => {
  it('split leaves no secret value in the partial config, hydrate(split(x)) = x, mask never shows a value', () => {
    let bases = 0;
    const newBaseCoordinate = () => `coffer_workspace_w_secret_g${++bases}`;
    fc.assert(
      fc.property(specAndConfig, ([spec, config]) => {
        const result = split(spec, config, { newBaseCoordinate });
        const values = new Map(result.writes.map((w) => [w.coordinate, w.value]));
        expect(hydrate(result.partialConfig, (c) => values.get(c)!)).toEqual(config);
        const stored = JSON.stringify(result.partialConfig);
        const masked = JSON.stringify(mask(spec, config));
        for (const v of secretsOf(result)) {
          expect(stored.includes(JSON.stringify(v))).toBe(false);
          expect(masked.includes(JSON.stringify(v))).toBe(false);
        }
        expect(secretValues(result.partialConfig, config).sort()).toEqual(result.writes.map((w) => w.value).sort());
        // Sending the read (the masked partial config) back keeps every coordinate.
        const again = split(spec, mask(spec, result.partialConfig), { stored: result.partialConfig, newBaseCoordinate });
        expect(again.partialConfig).toEqual(result.partialConfig);
        expect(again.writes).toEqual([]);
        expect(again.orphans).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it('every generated secret is found: no value generated as a secret survives in the partial config', () => {
    fc.assert(
      fc.property(specAndConfig, ([spec, config]) => {
        const generated = JSON.stringify(config).match(/secret-\d+-/g) ?? [];
        const result = split(spec, config, { newBaseCoordinate: () => 'coffer_workspace_w_secret_x' });
        const stored = JSON.stringify(result.partialConfig);
        for (const marker of generated) expect(stored).not.toContain(marker);
        expect(JSON.stringify(mask(spec, config))).not.toMatch(/secret-\d+-/);
        if (generated.length > 0) expect(JSON.stringify(mask(spec, config))).toContain(SECRET_MASK);
      }),
      { numRuns: 300 },
    );
  });
});
