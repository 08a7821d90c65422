import { createHash } from 'node:crypto';

/** What a read returns in place of every secret. */
export const SECRET_MASK = '**********';

// Inside an array item the mask carries `#<item reference>`: items move, so a path cannot say whose secret a mask keeps.
const MASK_WITH_REFERENCE = `${SECRET_MASK}#`;
const ITEM_REFERENCE = /^[0-9a-f]{16}$/;

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
  /** Concrete path, e.g. `$.list[1].key`. */
  path: string;
  /** The path with every array index as `[*]`, e.g. `$.list[*].key`: the field, whichever item holds it. */
  template: string;
  /** True when the site is inside an array item, where the path says nothing about which item it is. */
  inArray: boolean;
  value: unknown;
}

/**
 * Rebuilds `config`, replacing each value at a secret position with `replace(site)`. A value is
 * at a secret position when some candidate schema there says `airbyte_secret` and the value is a
 * scalar or a secret reference (an array or object under a secret schema is walked instead).
 */
function rebuild(spec: unknown, config: unknown, replace: (site: Site) => unknown, refuseStrayReferences = false): unknown {
  const walk = (value: unknown, candidates: Schema[], path: string, template: string, inArray: boolean, depth: number): unknown => {
    if (depth > MAX_DEPTH) throw new SecretJsonError(path, `is nested deeper than ${MAX_DEPTH} levels`);
    const secret = candidates.some((c) => c.airbyte_secret === true);
    if (secret && value !== null && value !== undefined && (!isObject(value) || isSecretReference(value)) && !Array.isArray(value)) {
      return replace({ path, template, inArray, value });
    }
    if (Array.isArray(value)) return value.map((item, i) => walk(item, childSchemasOfItem(candidates, i), `${path}[${i}]`, `${template}[*]`, true, depth + 1));
    if (isObject(value)) {
      // Only config issues coordinates, and only at secret positions: anything else would be hydrated into this config.
      if (refuseStrayReferences && Object.hasOwn(value, '_secret')) throw new SecretJsonError(path, 'holds a secret reference outside a secret field; send values only');
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = walk(v, childSchemasOfKey(candidates, k), keyPath(path, k), keyPath(template, k), inArray, depth + 1);
      return out;
    }
    return value;
  };
  return walk(config, expand(spec), '$', '$', false, 0);
}

// The base of a coordinate; a stored reference that is not versioned counts as its own base.
function baseOf(coordinate: string): string {
  const at = coordinate.lastIndexOf('_v');
  return at > 0 ? coordinate.slice(0, at) : coordinate;
}

// Opaque and stable across versions of the base: a client holding it learns nothing about the coordinate,
// and it resolves only among the secrets stored for the same field of the same config.
function itemReference(coordinate: string): string {
  return createHash('sha256').update(baseOf(coordinate)).digest('hex').slice(0, 16);
}

/** True for the mask a read returns: {@link SECRET_MASK}, or inside an array item the mask with its item reference. */
export function isMask(value: unknown): boolean {
  return value === SECRET_MASK || (typeof value === 'string' && value.startsWith(MASK_WITH_REFERENCE) && ITEM_REFERENCE.test(value.slice(MASK_WITH_REFERENCE.length)));
}

/** The mask sent back at `path`: undefined for a value, `{}` for the plain mask, `{ reference }` for the mask of an array item. */
function parseMask(value: unknown, path: string): { reference?: string } | undefined {
  if (value === SECRET_MASK) return {};
  if (typeof value !== 'string' || !value.startsWith(MASK_WITH_REFERENCE)) return undefined;
  const reference = value.slice(MASK_WITH_REFERENCE.length);
  if (!ITEM_REFERENCE.test(reference)) throw new SecretJsonError(path, 'is a mask with a malformed item reference; send the mask as read, or a new value');
  return { reference };
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

/** Each reference at a secret position of a partial config, with its concrete path (`$.a`, `$.list[0].key`), sorted by path. */
export function secretReferences(spec: unknown, partial: unknown): { path: string; coordinate: string }[] {
  return sitesOf(spec, partial)
    .flatMap((s) => (isSecretReference(s.value) ? [{ path: s.path, coordinate: s.value._secret }] : []))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * The partial config with every reference to `from` made a reference to `to` (another version of the
 * same secret at the same position, e.g. after a rollback); throws {@link SecretJsonError} past 64 levels.
 */
export function replaceSecretReference(partial: unknown, from: string, to: string): unknown {
  const walk = (node: unknown, path: string, depth: number): unknown => {
    if (depth > MAX_DEPTH) throw new SecretJsonError(path, `is nested deeper than ${MAX_DEPTH} levels`);
    if (isSecretReference(node)) return node._secret === from ? { _secret: to } : node;
    if (Array.isArray(node)) return node.map((v, i) => walk(v, `${path}[${i}]`, depth + 1));
    if (isObject(node)) return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, walk(v, keyPath(path, k), depth + 1)]));
    return node;
  };
  return walk(partial, '$', 0);
}

/** The concrete secret paths present in a config, e.g. `$.list[0].key`, sorted. */
export function concreteSecretPaths(spec: unknown, config: unknown): string[] {
  return sitesOf(spec, config)
    .map((s) => s.path)
    .sort();
}

/**
 * Every secret value (plaintext or reference) replaced by {@link SECRET_MASK}; a stored reference
 * inside an array item by the mask with its item reference (`**********#<16 hex>`), so that the
 * mask sent back keeps the secret of its own item wherever the item has moved.
 */
export function mask(spec: unknown, config: unknown): unknown {
  return rebuild(spec, config, (site) => (site.inArray && isSecretReference(site.value) ? `${MASK_WITH_REFERENCE}${itemReference(site.value._secret)}` : SECRET_MASK));
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
 * Splits a submitted config: each secret becomes a reference. The mask keeps a stored reference:
 * outside arrays the one stored at the same path; inside an array item the one its item reference
 * names among the secrets stored for the same field, whatever the item's index now (a plain mask
 * there cannot say which item it means and is refused, and so is one secret kept twice). A new
 * value becomes the next version of the base stored at the same path when no mask keeps that base,
 * else v1 of a new base; a missing optional secret produces nothing. Any `{"_secret": …}` the
 * caller sends, wherever it is, is refused: only the stored coordinates at secret positions are
 * reused. Inputs are not modified.
 */
export function split(spec: unknown, config: unknown, options: SplitOptions): SplitResult {
  const storedRefs = new Map<string, SecretReference>();
  // `<template> <item reference>` → the coordinate stored there; null when two stored secrets share it (then no mask may pick either).
  const storedByReference = new Map<string, string | null>();
  if (options.stored !== undefined) {
    for (const s of sitesOf(spec, options.stored)) {
      if (!isSecretReference(s.value)) continue;
      storedRefs.set(s.path, s.value);
      const key = `${s.template} ${itemReference(s.value._secret)}`;
      const seen = storedByReference.get(key);
      storedByReference.set(key, seen === undefined || seen === s.value._secret ? s.value._secret : null);
    }
  }
  const sites = sitesOf(spec, config, true).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const planned = new Map<string, { coordinate: string; write?: PlannedSecretWrite }>();
  // Base → the path that keeps or continues it: one secret belongs to one item.
  const claimed = new Map<string, string>();
  const values: Site[] = [];
  for (const site of sites) {
    if (isSecretReference(site.value)) throw new SecretJsonError(site.path, 'is a secret reference; send the value or the mask');
    const masked = parseMask(site.value, site.path);
    if (!masked) {
      values.push(site);
      continue;
    }
    let coordinate: string | null | undefined;
    if (masked.reference !== undefined) {
      coordinate = storedByReference.get(`${site.template} ${masked.reference}`);
      if (coordinate === undefined) throw new SecretJsonError(site.path, 'is masked with an item reference that names no secret stored for this field; send a new value');
      if (coordinate === null) throw new SecretJsonError(site.path, 'is masked with an item reference that names more than one stored secret; send a new value');
    } else {
      if (site.inArray) throw new SecretJsonError(site.path, 'is masked without its item reference, so which item’s secret it keeps cannot be told; send the mask as read, or a new value');
      coordinate = storedRefs.get(site.path)?._secret;
      if (!coordinate) throw new SecretJsonError(site.path, 'is masked but no secret is stored there');
    }
    const base = baseOf(coordinate);
    const other = claimed.get(base);
    if (other !== undefined) throw new SecretJsonError(site.path, `keeps the same stored secret as ${other}; a secret belongs to one item, send a new value`);
    claimed.set(base, site.path);
    planned.set(site.path, { coordinate });
  }
  const needsBase: Site[] = [];
  for (const site of values) {
    if (typeof site.value === 'object') throw new SecretJsonError(site.path, 'must be a string');
    const value = typeof site.value === 'string' ? site.value : JSON.stringify(site.value as Json);
    const existing = storedRefs.get(site.path)?._secret;
    // A base a mask keeps stays with that mask's item; this value gets a base of its own.
    if (existing && !claimed.has(baseOf(existing))) {
      const { base, version } = parseVersioned(existing, site.path);
      const coordinate = `${base}_v${version + 1}`;
      claimed.set(base, site.path);
      planned.set(site.path, { coordinate, write: { path: site.path, baseCoordinate: base, version: version + 1, coordinate, value } });
    } else {
      needsBase.push({ ...site, value });
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
  const orphans = [...new Set([...storedRefs.values()].map((r) => r._secret))].filter((c) => !referenced.has(c));
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
