import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { CofferError, type ErrorDetail } from '@coffer/contracts';
import { SECRET_MASK } from '@coffer/secret-json';

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

function newAjv(): Ajv {
  // strict: false lets Airbyte's annotation keywords (airbyte_secret, order, group, ...) through.
  const ajv = new Ajv({ allErrors: true, strict: false, validateSchema: true });
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
  const key = JSON.stringify(spec);
  let validateFn = cache.get(key);
  if (!validateFn) {
    const { $schema, ...rest } = spec as Record<string, unknown>;
    if ($schema !== undefined && !(typeof $schema === 'string' && KNOWN_META.test($schema))) {
      throw new CofferError('invalid_argument', `${field}: $schema must be JSON Schema draft-04, -06 or -07`, [{ field: `${field}.$schema`, reason: 'unsupported' }]);
    }
    try {
      validateFn = ajv.compile(rest);
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
      const problems = (compiled.errors ?? [])
        // A masked secret stands for the stored value, which was valid when it was written.
        .filter((e) => valueAt(config, e.instancePath) !== SECRET_MASK)
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
