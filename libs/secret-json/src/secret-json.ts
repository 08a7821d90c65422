/** What a read returns in place of every secret. */
export const SECRET_MASK = '**********';

/** A reference to a stored secret, as it appears inside a partial config. */
export interface SecretReference {
  _secret: string;
}

/** A config or spec that cannot be handled; `path` names where, the message never holds a value. */
export class SecretJsonError extends Error {
  readonly path: string;

  constructor(path: string, message: string) {
    super(`${path} ${message}`);
    this.name = 'SecretJsonError';
    this.path = path;
  }
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Schema = Record<string, unknown>;

const MAX_DEPTH = 64;

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** True when `v` is `{"_secret": "<coordinate>"}` and nothing else. */
export function isSecretReference(v: unknown): v is SecretReference {
  return isObject(v) && typeof v._secret === 'string' && Object.keys(v).length === 1;
}

function keyPath(path: string, key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

// The schema itself plus every oneOf/anyOf/allOf branch under it, flattened.
function expand(schema: unknown, depth = 0): Schema[] {
  if (!isObject(schema) || depth > MAX_DEPTH) return [];
  const out: Schema[] = [schema];
  for (const k of ['oneOf', 'anyOf', 'allOf']) {
    const branches = schema[k];
    if (Array.isArray(branches)) for (const b of branches) out.push(...expand(b, depth + 1));
  }
  return out;
}

function childSchemasOfKey(candidates: Schema[], key: string): Schema[] {
  const out: Schema[] = [];
  for (const c of candidates) {
    const props = c.properties;
    if (isObject(props) && Object.hasOwn(props, key)) out.push(...expand(props[key]));
  }
  return out;
}

function childSchemasOfItem(candidates: Schema[], index: number): Schema[] {
  const out: Schema[] = [];
  for (const c of candidates) {
    const items = c.items;
    if (Array.isArray(items)) out.push(...expand(items[index]));
    else out.push(...expand(items));
  }
  return out;
}

/** Path templates of every secret in a spec (`$.a.b`, `$.list[*].key`), through properties, items and every oneOf/anyOf/allOf branch. */
export function secretPaths(spec: unknown): string[] {
  const found = new Set<string>();
  const walk = (schema: unknown, path: string, depth: number) => {
    if (depth > MAX_DEPTH) return;
    for (const s of expand(schema)) {
      if (s.airbyte_secret === true) found.add(path);
      if (isObject(s.properties)) for (const [k, child] of Object.entries(s.properties)) walk(child, keyPath(path, k), depth + 1);
      if (Array.isArray(s.items)) for (const child of s.items) walk(child, `${path}[*]`, depth + 1);
      else if (s.items !== undefined) walk(s.items, `${path}[*]`, depth + 1);
    }
  };
  walk(spec, '$', 0);
  return [...found].sort();
}

interface Site {
  path: string;
  value: unknown;
}

/**
 * Rebuilds `config`, replacing each value at a secret position with `replace(site)`. A value is
 * at a secret position when some candidate schema there says `airbyte_secret` and the value is a
 * scalar or a secret reference (an array or object under a secret schema is walked instead).
 */
function rebuild(spec: unknown, config: unknown, replace: (site: Site) => unknown, refuseStrayReferences = false): unknown {
  const walk = (value: unknown, candidates: Schema[], path: string, depth: number): unknown => {
    if (depth > MAX_DEPTH) throw new SecretJsonError(path, `is nested deeper than ${MAX_DEPTH} levels`);
    const secret = candidates.some((c) => c.airbyte_secret === true);
    if (secret && value !== null && value !== undefined && (!isObject(value) || isSecretReference(value)) && !Array.isArray(value)) {
      return replace({ path, value });
    }
    if (Array.isArray(value)) return value.map((item, i) => walk(item, childSchemasOfItem(candidates, i), `${path}[${i}]`, depth + 1));
    if (isObject(value)) {
      // Only config issues coordinates, and only at secret positions: anything else would be hydrated into this config.
      if (refuseStrayReferences && Object.hasOwn(value, '_secret')) throw new SecretJsonError(path, 'holds a secret reference outside a secret field; send values only');
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = walk(v, childSchemasOfKey(candidates, k), keyPath(path, k), depth + 1);
      return out;
    }
    return value;
  };
  return walk(config, expand(spec), '$', 0);
}

function sitesOf(spec: unknown, config: unknown, refuseStrayReferences = false): Site[] {
  const sites: Site[] = [];
  rebuild(
    spec,
    config,
    (site) => {
      sites.push(site);
      return site.value;
    },
    refuseStrayReferences,
  );
  return sites;
}

/** The coordinates a partial config holds at secret positions of the spec: the only ones config issued for it. */
export function ownSecretCoordinates(spec: unknown, partial: unknown): string[] {
  return sitesOf(spec, partial).flatMap((s) => (isSecretReference(s.value) ? [s.value._secret] : []));
}

/** The concrete secret paths present in a config, e.g. `$.list[0].key`, sorted. */
export function concreteSecretPaths(spec: unknown, config: unknown): string[] {
  return sitesOf(spec, config)
    .map((s) => s.path)
    .sort();
}

/** Every secret value (plaintext or reference) replaced by {@link SECRET_MASK}. */
export function mask(spec: unknown, config: unknown): unknown {
  return rebuild(spec, config, () => SECRET_MASK);
}

/** A secret value config must send to the secrets service. */
export interface PlannedSecretWrite {
  /** Concrete path, e.g. `$.credentials.client_secret`. */
  path: string;
  /** The coordinate without `_v<n>`. */
  baseCoordinate: string;
  /** 1 for a new base, the stored version + 1 otherwise. */
  version: number;
  /** `${baseCoordinate}_v${version}`. */
  coordinate: string;
  /** The plaintext; numbers and booleans are written as their JSON text. */
  value: string;
}

/** Options of {@link split}. */
export interface SplitOptions {
  /** The partial config stored so far (updates); undefined on create. */
  stored?: unknown;
  /** Makes a fresh base coordinate; called in the order of the new secrets' paths, sorted as strings. */
  newBaseCoordinate: () => string;
}

/** What {@link split} returns. */
export interface SplitResult {
  /** The config with each secret replaced by `{"_secret": coordinate}`: safe to store. */
  partialConfig: unknown;
  /** Secret values to write. */
  writes: PlannedSecretWrite[];
  /** Full coordinates of the stored partial config that the new one no longer references. */
  orphans: string[];
}

/** Splits a coordinate at its last `_v` into base and version. */
function parseVersioned(coordinate: string, path: string): { base: string; version: number } {
  const at = coordinate.lastIndexOf('_v');
  const version = Number(coordinate.slice(at + 2));
  if (at <= 0 || !Number.isInteger(version) || version < 1) throw new SecretJsonError(path, 'holds a stored reference that is not a versioned coordinate');
  return { base: coordinate.slice(0, at), version };
}

function collectReferences(node: unknown, path: string, out: Map<string, unknown>, depth = 0): void {
  if (depth > MAX_DEPTH) throw new SecretJsonError(path, `is nested deeper than ${MAX_DEPTH} levels`);
  if (isSecretReference(node)) {
    out.set(path, node);
    return;
  }
  if (Array.isArray(node)) node.forEach((v, i) => collectReferences(v, `${path}[${i}]`, out, depth + 1));
  else if (isObject(node)) for (const [k, v] of Object.entries(node)) collectReferences(v, keyPath(path, k), out, depth + 1);
}

/**
 * Splits a submitted config: each secret becomes a reference. A new value becomes v1 of a new base,
 * or the next version of the base stored at the same path; the mask keeps the stored reference
 * (inside arrays too); a missing optional secret produces nothing. Any `{"_secret": …}` the caller
 * sends, wherever it is, is refused: only the stored coordinates at secret positions are reused.
 * Inputs are not modified.
 */
export function split(spec: unknown, config: unknown, options: SplitOptions): SplitResult {
  const storedRefs = new Map<string, unknown>();
  if (options.stored !== undefined) for (const s of sitesOf(spec, options.stored)) if (isSecretReference(s.value)) storedRefs.set(s.path, s.value);
  const sites = sitesOf(spec, config, true);
  const planned = new Map<string, { coordinate: string; write?: PlannedSecretWrite }>();
  const needsBase: Site[] = [];
  for (const site of [...sites].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
    if (isSecretReference(site.value)) throw new SecretJsonError(site.path, 'is a secret reference; send the value or the mask');
    const storedRef = storedRefs.get(site.path);
    const existing = isSecretReference(storedRef) ? storedRef._secret : undefined;
    if (site.value === SECRET_MASK) {
      if (!existing) throw new SecretJsonError(site.path, 'is masked but no secret is stored there');
      planned.set(site.path, { coordinate: existing });
      continue;
    }
    if (typeof site.value === 'object') throw new SecretJsonError(site.path, 'must be a string');
    const value = typeof site.value === 'string' ? site.value : JSON.stringify(site.value as Json);
    if (existing) {
      const { base, version } = parseVersioned(existing, site.path);
      const coordinate = `${base}_v${version + 1}`;
      planned.set(site.path, { coordinate, write: { path: site.path, baseCoordinate: base, version: version + 1, coordinate, value } });
    } else {
      needsBase.push({ path: site.path, value });
    }
  }
  for (const site of needsBase) {
    const base = options.newBaseCoordinate();
    const coordinate = `${base}_v1`;
    planned.set(site.path, { coordinate, write: { path: site.path, baseCoordinate: base, version: 1, coordinate, value: site.value as string } });
  }
  const partialConfig = rebuild(spec, config, (site) => ({ _secret: planned.get(site.path)!.coordinate }));
  const writes = [...planned.values()].flatMap((p) => (p.write ? [p.write] : [])).sort((a, b) => (a.path < b.path ? -1 : 1));
  const referenced = new Set([...planned.values()].map((p) => p.coordinate));
  const orphans = [...new Set([...storedRefs.values()].map((r) => (r as SecretReference)._secret))].filter((c) => !referenced.has(c));
  return { partialConfig, writes, orphans };
}

/** Every full coordinate referenced by a partial config; throws {@link SecretJsonError} past 64 levels of nesting. */
export function secretCoordinates(partial: unknown): string[] {
  const refs = new Map<string, unknown>();
  collectReferences(partial, '$', refs);
  return [...refs.values()].map((r) => (r as SecretReference)._secret);
}

/** Replaces every `{"_secret": c}` of a partial config by `lookup(c)`; throws {@link SecretJsonError} past 64 levels of nesting. */
export function hydrate(partial: unknown, lookup: (coordinate: string) => string): unknown {
  const walk = (node: unknown, path: string, depth: number): unknown => {
    if (depth > MAX_DEPTH) throw new SecretJsonError(path, `is nested deeper than ${MAX_DEPTH} levels`);
    if (isSecretReference(node)) return lookup(node._secret);
    if (Array.isArray(node)) return node.map((v, i) => walk(v, `${path}[${i}]`, depth + 1));
    if (isObject(node)) return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, walk(v, keyPath(path, k), depth + 1)]));
    return node;
  };
  return walk(partial, '$', 0);
}

/** The plaintext values of a hydrated config where the partial config holds references (for log redaction). */
export function secretValues(partial: unknown, full: unknown): string[] {
  const out: string[] = [];
  const walk = (p: unknown, f: unknown) => {
    if (isSecretReference(p)) {
      if (f !== undefined && f !== null) out.push(typeof f === 'string' ? f : JSON.stringify(f));
      return;
    }
    if (Array.isArray(p) && Array.isArray(f)) p.forEach((v, i) => walk(v, f[i]));
    else if (isObject(p) && isObject(f)) for (const [k, v] of Object.entries(p)) walk(v, f[k]);
  };
  walk(partial, full);
  return out;
}
