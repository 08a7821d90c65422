import RandExp from 'randexp';

type Schema = Record<string, any>;

/** How {@link generateConfig} fills a spec: which `oneOf` branch at each path, and each secret's value. */
export interface GenerateOptions {
  /** Index of the branch to take at `path` among `branches` (default: the first that holds a secret). */
  branch?: (path: string, branches: Schema[]) => number;
  /** The value of the secret at `path`; it must be unique and at least 8 characters. */
  secret: (path: string, schema: Schema) => string;
  /** Seed for values drawn from patterns. */
  seed?: number;
}

const isObject = (v: unknown): v is Schema => v !== null && typeof v === 'object' && !Array.isArray(v);

/** True when the schema or anything under it is marked `airbyte_secret`. */
export function containsSecret(schema: unknown, depth = 0): boolean {
  if (!isObject(schema) || depth > 40) return false;
  if (schema.airbyte_secret === true) return true;
  const children = [
    ...Object.values(isObject(schema.properties) ? schema.properties : {}),
    ...(Array.isArray(schema.items) ? schema.items : schema.items ? [schema.items] : []),
    ...['oneOf', 'anyOf', 'allOf'].flatMap((k) => (Array.isArray(schema[k]) ? schema[k] : [])),
  ];
  return children.some((c) => containsSecret(c, depth + 1));
}

function merge(base: Schema, extra: Schema): Schema {
  return {
    ...base,
    ...extra,
    properties: { ...(base.properties ?? {}), ...(extra.properties ?? {}) },
    required: [...new Set([...(base.required ?? []), ...(extra.required ?? [])])],
  };
}

function typeOf(schema: Schema): string {
  const t = Array.isArray(schema.type) ? schema.type.find((x: string) => x !== 'null') : schema.type;
  if (t) return t;
  if (schema.properties) return 'object';
  if (schema.items) return 'array';
  return 'string';
}

function stringFor(schema: Schema, seed: number): string {
  if (typeof schema.default === 'string') return schema.default;
  if (Array.isArray(schema.examples) && typeof schema.examples[0] === 'string' && (!schema.pattern || new RegExp(schema.pattern, 'u').test(schema.examples[0]))) {
    return schema.examples[0];
  }
  if (schema.pattern) {
    try {
      const r = new RandExp(schema.pattern);
      r.max = 4;
      r.randInt = (a: number, b: number) => a + ((seed * 7919) % (b - a + 1));
      return r.gen();
    } catch {
      // A pattern randexp cannot parse (e.g. a lookbehind): fall through to the defaults.
    }
  }
  switch (schema.format) {
    case 'date-time':
      return '2024-01-01T00:00:00Z';
    case 'date':
      return '2024-01-01';
    case 'email':
      return 'someone@example.com';
    case 'uri':
    case 'url':
      return 'https://example.com/path';
    case 'uuid':
      return '00000000-0000-4000-8000-000000000000';
    default:
      return 'x'.repeat(Math.max(schema.minLength ?? 0, 5));
  }
}

/** The first branch that holds a secret (so a generated config exercises secrets), else 0. */
export function defaultBranch(branches: unknown[]): number {
  return Math.max(0, branches.findIndex((b) => containsSecret(b)));
}

/** Another branch than the default one, for a switch. */
export function otherBranch(branches: unknown[]): number {
  return (defaultBranch(branches) + 1) % branches.length;
}

/**
 * A config that satisfies `spec`: every required field, and every field under which a secret can
 * sit, filled; each secret with the value `options.secret` gives for its path.
 */
export function generateConfig(spec: unknown, options: GenerateOptions): unknown {
  const seed = options.seed ?? 1;
  const gen = (raw: Schema, path: string, depth: number): unknown => {
    if (depth > 30) return undefined;
    let schema = raw;
    if (Array.isArray(schema.allOf)) schema = schema.allOf.reduce((acc: Schema, s: Schema) => merge(acc, s), { ...schema, allOf: undefined });
    for (const key of ['oneOf', 'anyOf'] as const) {
      if (Array.isArray(schema[key]) && schema[key].length > 0) {
        const branches = schema[key] as Schema[];
        const i = Math.min(options.branch?.(path, branches) ?? defaultBranch(branches), branches.length - 1);
        const { [key]: _dropped, ...rest } = schema;
        return gen(merge(rest, branches[i]!), path, depth + 1);
      }
    }
    if (schema.airbyte_secret === true && typeOf(schema) !== 'array' && typeOf(schema) !== 'object') return options.secret(path, schema);
    if ('const' in schema) return schema.const;
    if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[0];
    switch (typeOf(schema)) {
      case 'object': {
        const out: Schema = {};
        const required: string[] = schema.required ?? [];
        for (const [k, sub] of Object.entries((schema.properties ?? {}) as Schema)) {
          // Constants are how oneOf branches tell themselves apart: always set them.
          if (required.includes(k) || containsSecret(sub) || (isObject(sub) && 'const' in sub)) {
            const v = gen(sub as Schema, `${path}.${k}`, depth + 1);
            if (v !== undefined) out[k] = v;
          }
        }
        return out;
      }
      case 'array': {
        // An array's examples usually describe its items (e.g. source-github's repositories).
        const items = (Array.isArray(schema.items) ? schema.items : [schema.items ?? {}]).map((item: Schema) =>
          isObject(item) && !item.examples && Array.isArray(schema.examples) ? { ...item, examples: schema.examples } : item,
        );
        const n = Math.max(schema.minItems ?? 1, 1);
        return Array.from({ length: n }, (_, i) => gen((items[i] ?? items[0]) as Schema, `${path}[${i}]`, depth + 1));
      }
      case 'integer':
        return typeof schema.default === 'number' ? schema.default : Math.max(schema.minimum ?? 1, 1);
      case 'number':
        return typeof schema.default === 'number' ? schema.default : Math.max(schema.minimum ?? 1, 1);
      case 'boolean':
        return typeof schema.default === 'boolean' ? schema.default : false;
      default:
        return stringFor(schema, seed);
    }
  };
  return gen(spec as Schema, '$', 0);
}

/** The paths of the `oneOf` choices in a spec whose branches differ in their secrets: where a branch switch orphans something. */
export function secretSwitchPoints(spec: unknown): string[] {
  const found: string[] = [];
  const walk = (schema: unknown, path: string, depth: number) => {
    if (!isObject(schema) || depth > 30) return;
    if (Array.isArray(schema.oneOf) && schema.oneOf.length > 1 && schema.oneOf.some((b: unknown) => containsSecret(b))) found.push(path);
    for (const [k, sub] of Object.entries(isObject(schema.properties) ? schema.properties : {})) walk(sub, `${path}.${k}`, depth + 1);
  };
  walk(spec, '$', 0);
  return found;
}
