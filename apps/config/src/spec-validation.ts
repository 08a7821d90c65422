import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { RE2JS } from 're2js';
import { CofferError, type ErrorDetail } from '@coffer/contracts';
import { concreteSecretPaths, isMask } from '@coffer/secret-json';
import { PatternError, re2FromJava } from './java-pattern';

/** A compiled connector spec: validates configurations and names the JSON path of each problem. */
export interface CompiledSpec {
  /** Throws `invalid_argument` listing each bad field by JSON path; a masked secret counts as present. */
  validate(config: unknown, field: string): void;
}

// Every failing path is reported, up to a bound that keeps an error message readable.
const MAX_REPORTED = 100;
// Of those, the message lists the first few; the details name every one.
const MAX_IN_MESSAGE = 5;
const MAX_KEY_IN_PATH = 48;
const KNOWN_META = /^https?:\/\/json-schema\.org\/(draft-0[467])\/schema#?$/;

/** Deeper specs are refused: the deepest real connector spec nests 21 levels. */
const MAX_SPEC_DEPTH = 64;

/**
 * Scans `p` from `from`, skipping escapes and character classes: the end of the group opened at
 * `from` (`'group'`), or whether a `|` stands outside every group (`'alternation'`, -1 if none).
 */
function scan(p: string, from: number, want: 'group' | 'alternation'): number {
  let depth = 0;
  let inClass = false;
  for (let i = from; i < p.length; i++) {
    const c = p[i];
    if (c === '\\') i++;
    else if (inClass) inClass = c !== ']';
    else if (c === '[') inClass = true;
    else if (c === '(') depth++;
    else if (c === ')' && --depth === 0 && want === 'group') return i;
    else if (c === '|' && depth === 0 && want === 'alternation') return i;
  }
  return -1;
}

/**
 * A JSON Schema `pattern` read as Java reads it (Airbyte's validator compiles patterns with
 * java.util.regex; see {@link re2FromJava}) and evaluated by RE2 (re2js), whose matching time is
 * linear in the input whatever the pattern, so no pattern can stall the service (ReDoS).
 * Lookbehinds use RE2JS's linear-time lookbehinds; lookaheads are accepted only right after a
 * leading `^` (`^(?!cohort_).*$`), where each is a separate anchored match. Anything RE2 cannot
 * run in linear time (backreferences, other lookarounds) throws.
 */
export function linearPattern(pattern: string): { test(s: string): boolean } {
  const compile = (p: string) => RE2JS.compile(p, RE2JS.LOOKBEHINDS);
  const conditions: { re: RE2JS; want: boolean }[] = [];
  let rest = re2FromJava(pattern);
  while (rest.startsWith('^(?!') || rest.startsWith('^(?=')) {
    const end = scan(rest, 1, 'group');
    if (end < 0) break;
    conditions.push({ re: compile(`^(?:${rest.slice(4, end)})`), want: rest[3] === '=' });
    rest = `^${rest.slice(end + 1)}`;
  }
  // `^(?!a)x|y`: the lookahead binds one alternative only, which separate matches cannot express.
  if (conditions.length > 0 && scan(rest, 0, 'alternation') >= 0) throw new PatternError('has a leading lookahead before a top-level alternation, which cannot be evaluated in linear time');
  const main = compile(rest);
  return { test: (s) => conditions.every((c) => c.re.test(s) === c.want) && main.test(s) };
}

// ajv calls this for `pattern` and `patternProperties`; the key keeps its per-pattern cache apart.
const re2Engine = Object.assign((pattern: string) => Object.assign(linearPattern(pattern), { toString: () => `re2:${pattern}` }), { code: 're2js' });

const ANNOTATIONS = new Set(['enum', 'const', 'default', 'examples']);
/** Patterns already known to compile, so a cached spec is not recompiled on every validation. */
const runnablePatterns = new Set<string>();

/** Refuses, naming its path, a spec nested too deep or with a pattern RE2 cannot run in linear time. */
function checkPatterns(spec: unknown, field: string): void {
  const pointer = (tokens: string[]) => tokens.map((t) => `/${t.replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');
  const walk = (node: unknown, tokens: string[]): void => {
    if (node === null || typeof node !== 'object') return;
    if (tokens.length > MAX_SPEC_DEPTH) {
      throw new CofferError('invalid_argument', `${field} is nested deeper than ${MAX_SPEC_DEPTH} levels`, [{ field: `${field}:${jsonPath(pointer(tokens))}`, reason: 'too deep' }]);
    }
    const entries: [string, unknown][] = Array.isArray(node) ? node.map((v, i) => [String(i), v]) : Object.entries(node);
    for (const [k, v] of entries) {
      const patterns = k === 'pattern' && typeof v === 'string' ? [v] : k === 'patternProperties' && v && typeof v === 'object' && !Array.isArray(v) ? Object.keys(v) : [];
      for (const p of patterns) {
        if (runnablePatterns.has(p)) continue;
        try {
          linearPattern(p);
          if (runnablePatterns.size > 2000) runnablePatterns.clear();
          runnablePatterns.add(p);
        } catch (err) {
          const at = jsonPath(pointer([...tokens, k]));
          const why = err instanceof PatternError ? err.message : 'cannot be evaluated in linear time (no backreferences or lookarounds)';
          throw new CofferError('invalid_argument', `${field}: the pattern at ${at} ${why}`, [{ field: `${field}:${at}`, reason: 'unsupported pattern' }]);
        }
      }
      if (!ANNOTATIONS.has(k)) walk(v, [...tokens, k]);
    }
  };
  walk(spec, []);
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
/** JSON text with object keys sorted: equal for values ajv's `uniqueItems` calls equal. */
const canonical = (v: unknown): string =>
  Array.isArray(v) ? `[${v.map(canonical).join(',')}]` : isPlainObject(v) ? `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}` : JSON.stringify(v);
const unique = (xs: unknown[]) => [...new Map(xs.map((x) => [canonical(x), x])).values()];

// Keywords whose value is a map of name → schema, a schema, or a list of schemas.
const SCHEMA_MAPS = new Set(['properties', 'patternProperties', 'definitions', '$defs']);
const SCHEMAS = new Set(['additionalItems', 'additionalProperties', 'contains', 'propertyNames', 'not', 'if', 'then', 'else']);
const SCHEMA_LISTS = new Set(['allOf', 'anyOf', 'oneOf']);
// Annotations: they never change which configs are valid; draft-07 says what type each has.
const ANNOTATIONS_OF_TYPE: Record<string, (v: unknown) => boolean> = {
  title: (v) => typeof v === 'string',
  description: (v) => typeof v === 'string',
  $comment: (v) => typeof v === 'string',
  examples: Array.isArray,
  readOnly: (v) => typeof v === 'boolean',
  writeOnly: (v) => typeof v === 'boolean',
  contentMediaType: (v) => typeof v === 'string',
  contentEncoding: (v) => typeof v === 'string',
};

/**
 * The spec as ajv compiles it, read as leniently as Airbyte's validator (networknt) reads specs:
 * duplicates in `required`, `enum`, `type` and `dependencies` lists are dropped (a set holds each
 * once), and an annotation of the wrong type (`examples` that is not an array, a `title` that is
 * not a string, …) is left out, since no annotation changes which configs are valid. Everything
 * that does is kept as written, so draft-07's meta-schema still refuses a schema that cannot
 * validate anything (an unknown type, an empty `enum`, …) and ajv an unresolvable `$ref`. The
 * spec stored and returned is the one registered, unchanged.
 */
export function lenientSchema(schema: unknown, depth = 0): unknown {
  if (!isPlainObject(schema) || depth > MAX_SPEC_DEPTH) return schema;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    const wellTyped = ANNOTATIONS_OF_TYPE[k];
    if (wellTyped && !wellTyped(v)) continue;
    if ((k === 'required' || k === 'enum' || k === 'type') && Array.isArray(v)) out[k] = unique(v);
    else if (k === 'dependencies' && isPlainObject(v)) out[k] = Object.fromEntries(Object.entries(v).map(([n, d]) => [n, Array.isArray(d) ? unique(d) : lenientSchema(d, depth + 1)]));
    else if (SCHEMA_MAPS.has(k) && isPlainObject(v)) out[k] = Object.fromEntries(Object.entries(v).map(([n, c]) => [n, lenientSchema(c, depth + 1)]));
    else if ((SCHEMA_LISTS.has(k) || k === 'items') && Array.isArray(v)) out[k] = v.map((c) => lenientSchema(c, depth + 1));
    else if (SCHEMAS.has(k) || k === 'items') out[k] = lenientSchema(v, depth + 1);
    else out[k] = v;
  }
  return out;
}

function newAjv(): Ajv {
  // strict: false lets Airbyte's annotation keywords (airbyte_secret, order, group, ...) through.
  const ajv = new Ajv({ allErrors: true, strict: false, validateSchema: true, code: { regExp: re2Engine } });
  addFormats(ajv);
  return ajv;
}

const ajv = newAjv();
const cache = new Map<string, ValidateFunction>();

/** `$.a.b[0]['odd key']` from an ajv instance path such as `/a/b/0/odd key`. */
export function jsonPath(instancePath: string, child?: string): string {
  const tokens = instancePath
    .split('/')
    .slice(1)
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (child !== undefined) tokens.push(child);
  let out = '$';
  for (const raw of tokens) {
    // A key may be long (up to the request bound): paths name it by its start only.
    const t = raw.length > MAX_KEY_IN_PATH ? `${raw.slice(0, MAX_KEY_IN_PATH)}…` : raw;
    if (/^[0-9]+$/.test(t)) out += `[${t}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(t)) out += `.${t}`;
    else out += `[${JSON.stringify(t)}]`;
  }
  return out;
}

function valueAt(root: unknown, instancePath: string): unknown {
  let v = root;
  for (const raw of instancePath.split('/').slice(1)) {
    const t = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[t];
  }
  return v;
}

// Ajv's messages quote the spec (types, patterns, allowed values), never the submitted value.
function describe(e: ErrorObject): ErrorDetail {
  if (e.keyword === 'required') return { field: jsonPath(e.instancePath, String(e.params.missingProperty)), reason: 'is required' };
  if (e.keyword === 'additionalProperties') {
    return { field: jsonPath(e.instancePath, String(e.params.additionalProperty)), reason: 'is not allowed by the spec' };
  }
  return { field: jsonPath(e.instancePath), reason: e.message ?? `fails ${e.keyword}` };
}

/** Compiles a connector's JSON Schema spec; a spec that is not a valid schema is `invalid_argument` on `field`. */
export function compileSpec(spec: unknown, field = 'spec_json'): CompiledSpec {
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) {
    throw new CofferError('invalid_argument', `${field} must be a JSON Schema object`, [{ field, reason: 'not an object' }]);
  }
  checkPatterns(spec, field);
  const key = JSON.stringify(spec);
  let validateFn = cache.get(key);
  if (!validateFn) {
    const { $schema, ...rest } = spec as Record<string, unknown>;
    if ($schema !== undefined && !(typeof $schema === 'string' && KNOWN_META.test($schema))) {
      throw new CofferError('invalid_argument', `${field}: $schema must be JSON Schema draft-04, -06 or -07`, [{ field: `${field}.$schema`, reason: 'unsupported' }]);
    }
    try {
      validateFn = ajv.compile(lenientSchema(rest) as Record<string, unknown>);
    } catch (err) {
      const why = err instanceof Error ? err.message.slice(0, 300) : 'not a valid JSON Schema';
      throw new CofferError('invalid_argument', `${field} is not a valid JSON Schema: ${why}`, [{ field, reason: 'invalid schema' }]);
    }
    if (cache.size > 500) cache.clear();
    cache.set(key, validateFn);
  }
  const compiled = validateFn;
  return {
    validate(config, configField) {
      if (compiled(config)) return;
      // A masked secret stands for the stored value, which was valid when it was written; the mask
      // anywhere else is a value like any other.
      const secretPositions = new Set(concreteSecretPaths(spec, config));
      const problems = (compiled.errors ?? [])
        .filter((e) => !(isMask(valueAt(config, e.instancePath)) && secretPositions.has(jsonPath(e.instancePath))))
        // oneOf/anyOf summaries repeat what their branches already said.
        .filter((e, _i, all) => !(['oneOf', 'anyOf', 'if'].includes(e.keyword) && all.some((o) => o !== e && o.instancePath.startsWith(e.instancePath))));
      if (problems.length === 0) return;
      const details = problems.slice(0, MAX_REPORTED).map(describe);
      const unique = [...new Map(details.map((d) => [`${d.field} ${d.reason}`, d])).values()];
      throw new CofferError(
        'invalid_argument',
        `${configField} does not match the connector spec: ${unique
          .slice(0, MAX_IN_MESSAGE)
          .map((d) => `${d.field} ${d.reason}`)
          .join('; ')}${unique.length > MAX_IN_MESSAGE ? `; and ${unique.length - MAX_IN_MESSAGE} more` : ''}`,
        unique.map((d) => ({ ...d, field: `${configField}:${d.field}` })),
      );
    },
  };
}
