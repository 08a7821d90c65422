import { createInterface } from 'node:readline';
import { Writable, type Readable } from 'node:stream';
import { UsageError } from './args';

/** Asks one question at a time, on a terminal or on any stream (tests script it). */
export interface Prompter {
  /** Shows `question` and resolves the line typed; a secret is read without echo. Rejects (UsageError) when the input ends. */
  ask(question: string, options?: { secret?: boolean }): Promise<string>;
  /** A line of explanation. */
  say(text: string): void;
  close(): void;
}

/**
 * A prompter reading lines from `input` and writing to `output`. On a terminal, readline echoes what
 * is typed through a gate that a secret question closes, so a secret is never shown.
 */
export function createPrompter(input: Readable, output: NodeJS.WritableStream, terminal = false): Prompter {
  let muted = false;
  let cancelled = false;
  const echo = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      if (!muted) output.write(chunk);
      done();
    },
  });
  const rl = createInterface({ input, output: echo, terminal });
  // Without a listener, Ctrl-C on a terminal would only pause the input and leave the question open.
  rl.on('SIGINT', () => {
    cancelled = true;
    rl.close();
  });
  const lines = rl[Symbol.asyncIterator]();
  return {
    async ask(question, options = {}) {
      output.write(question);
      muted = options.secret === true;
      try {
        const next = await lines.next();
        if (next.done) throw new UsageError(cancelled ? 'cancelled' : 'the input ended before the config was complete');
        return String(next.value);
      } finally {
        // The Enter of a secret answer was not echoed either.
        if (muted && terminal) output.write('\n');
        muted = false;
      }
    },
    say: (text) => void output.write(`${text}\n`),
    close: () => rl.close(),
  };
}

type Schema = Record<string, unknown>;

const isObject = (v: unknown): v is Schema => v !== null && typeof v === 'object' && !Array.isArray(v);
const MAX_DEPTH = 16;
const MAX_TRIES = 5;
const MAX_ITEMS = 100;

function typeOf(schema: Schema): string | undefined {
  const t = schema.type;
  if (Array.isArray(t)) return t.find((x) => x !== 'null') as string | undefined;
  if (typeof t === 'string') return t;
  if (isObject(schema.properties)) return 'object';
  return undefined;
}

function ordered(properties: Schema): [string, Schema][] {
  const entries = Object.entries(properties).filter((e): e is [string, Schema] => isObject(e[1]));
  const order = (s: Schema) => (typeof s.order === 'number' ? s.order : Number.MAX_SAFE_INTEGER);
  return entries.map((e, i) => [e, i] as const).sort((a, b) => order(a[0][1]) - order(b[0][1]) || a[1] - b[1]).map(([e]) => e);
}

function describe(schema: Schema): string | undefined {
  const text = typeof schema.description === 'string' ? schema.description.replace(/\s+/g, ' ').trim() : '';
  if (!text) return undefined;
  return text.length > 160 ? `${text.slice(0, 157)}...` : text;
}

/** One field's label for the questions: its path from the config's root, e.g. `credentials.api_key`. */
const child = (path: string, key: string) => (path ? `${path}.${key}` : key);

interface Field {
  label: string;
  required: boolean;
  depth: number;
}

/**
 * Asks, field by field, for a config that fits a connector spec (a JSON schema in the Airbyte
 * style): every property in `order`, required ones until answered, defaults on an empty answer,
 * enums and `oneOf` branches by number, booleans as y/n, numbers checked, `const` filled in, nested
 * objects and arrays walked; an `airbyte_secret` field is read without echo and its default is never
 * shown. Optional fields left empty are left out.
 */
export async function promptForConfig(spec: unknown, prompter: Prompter): Promise<Record<string, unknown>> {
  if (!isObject(spec)) throw new UsageError('the definition has no spec to prompt from: use --config');
  return (await objectValue(spec, '', prompter, 0)) ?? {};
}

async function objectValue(schema: Schema, path: string, prompter: Prompter, depth: number): Promise<Record<string, unknown>> {
  const properties = isObject(schema.properties) ? schema.properties : {};
  const required = new Set(Array.isArray(schema.required) ? schema.required.filter((r): r is string => typeof r === 'string') : []);
  const out: Record<string, unknown> = {};
  for (const [key, sub] of ordered(properties)) {
    const value = await fieldValue(sub, { label: child(path, key), required: required.has(key), depth: depth + 1 }, prompter);
    if (value !== undefined) out[key] = value;
  }
  return out;
}

async function confirm(prompter: Prompter, question: string, fallback: boolean): Promise<boolean> {
  for (let i = 0; i < MAX_TRIES; i++) {
    const answer = (await prompter.ask(`${question} [${fallback ? 'Y/n' : 'y/N'}]: `)).trim().toLowerCase();
    if (answer === '') return fallback;
    if (['y', 'yes', 'true'].includes(answer)) return true;
    if (['n', 'no', 'false'].includes(answer)) return false;
    prompter.say('  answer y or n');
  }
  throw new UsageError(`${question}: no valid answer after ${MAX_TRIES} tries`);
}

function optionName(branch: Schema, index: number): string {
  if (typeof branch.title === 'string') return branch.title;
  const constant = ordered(isObject(branch.properties) ? branch.properties : {}).find(([, s]) => 'const' in s);
  return constant ? String(constant[1].const) : `option ${index + 1}`;
}

/** Picks one of `options` by its number or its exact text; `fallback` (an index) on an empty answer. */
async function choose(prompter: Prompter, field: Field, options: string[], fallback: number | undefined): Promise<number | undefined> {
  prompter.say(`${field.label}${field.required ? '' : ' (optional)'}: one of`);
  options.forEach((o, i) => prompter.say(`  ${i + 1}) ${o}`));
  for (let i = 0; i < MAX_TRIES; i++) {
    const answer = (await prompter.ask(`choose 1-${options.length}${fallback !== undefined ? ` [${fallback + 1}]` : ''}: `)).trim();
    if (answer === '') {
      if (fallback !== undefined) return fallback;
      if (!field.required) return undefined;
      prompter.say(`  ${field.label} is required`);
      continue;
    }
    const n = /^\d+$/.test(answer) ? Number(answer) - 1 : options.indexOf(answer);
    if (n >= 0 && n < options.length) return n;
    prompter.say(`  answer a number from 1 to ${options.length}`);
  }
  throw new UsageError(`${field.label}: no valid answer after ${MAX_TRIES} tries`);
}

async function fieldValue(schema: Schema, field: Field, prompter: Prompter): Promise<unknown> {
  if ('const' in schema) return schema.const;
  if (field.depth > MAX_DEPTH) throw new UsageError(`${field.label}: the spec nests too deeply to enter interactively; use --config`);
  const secret = schema.airbyte_secret === true;
  const about = describe(schema);
  const branches = (Array.isArray(schema.oneOf) ? schema.oneOf : Array.isArray(schema.anyOf) ? schema.anyOf : []).filter(isObject);
  if (branches.length > 0) {
    if (about) prompter.say(`${field.label}: ${about}`);
    const picked = await choose(prompter, field, branches.map(optionName), undefined);
    if (picked === undefined) return undefined;
    const branch = branches[picked]!;
    const list = (s: Schema) => (Array.isArray(s.required) ? s.required : []);
    const merged = {
      properties: { ...(isObject(schema.properties) ? schema.properties : {}), ...(isObject(branch.properties) ? branch.properties : {}) },
      required: [...list(schema), ...list(branch)],
    };
    return objectValue(merged, field.label, prompter, field.depth);
  }
  const type = typeOf(schema);
  if (type === 'object') {
    if (!field.required && !(await confirm(prompter, `set ${field.label}?`, false))) return undefined;
    if (about) prompter.say(`${field.label}: ${about}`);
    return objectValue(schema, field.label, prompter, field.depth);
  }
  if (type === 'array') return arrayValue(schema, field, prompter);
  if (Array.isArray(schema.enum) && schema.enum.length > 0) {
    if (about) prompter.say(`${field.label}: ${about}`);
    const options = schema.enum;
    const fallback = schema.default !== undefined ? options.findIndex((o) => o === schema.default) : -1;
    const picked = await choose(prompter, field, options.map((o) => String(o)), fallback >= 0 ? fallback : undefined);
    return picked === undefined ? undefined : options[picked];
  }
  if (type === 'boolean') {
    const fallback = typeof schema.default === 'boolean' ? schema.default : undefined;
    if (fallback === undefined && !field.required && !(await confirm(prompter, `set ${field.label}?`, false))) return undefined;
    if (about) prompter.say(`${field.label}: ${about}`);
    return confirm(prompter, field.label, fallback ?? false);
  }
  return scalarValue(schema, field, type, secret, about, prompter);
}

async function scalarValue(schema: Schema, field: Field, type: string | undefined, secret: boolean, about: string | undefined, prompter: Prompter): Promise<unknown> {
  if (about) prompter.say(`${field.label}: ${about}`);
  const fallback = schema.default;
  const shownDefault = fallback !== undefined && !secret ? ` [${typeof fallback === 'string' ? fallback : JSON.stringify(fallback)}]` : '';
  const question = `${field.label}${secret ? ' (secret, not shown)' : ''}${field.required ? '' : ' (optional)'}${shownDefault}: `;
  for (let i = 0; i < MAX_TRIES; i++) {
    const raw = await prompter.ask(question, { secret });
    const answer = secret ? raw.replace(/\r$/, '') : raw.trim();
    if (answer === '') {
      if (fallback !== undefined) return fallback;
      if (!field.required) return undefined;
      prompter.say(`  ${field.label} is required`);
      continue;
    }
    if (type === 'integer' || type === 'number') {
      const n = Number(answer);
      if (Number.isFinite(n) && (type === 'number' || Number.isInteger(n))) return n;
      prompter.say(`  ${field.label} must be ${type === 'integer' ? 'a whole number' : 'a number'}`);
      continue;
    }
    return answer;
  }
  throw new UsageError(`${field.label}: no valid answer after ${MAX_TRIES} tries`);
}

async function arrayValue(schema: Schema, field: Field, prompter: Prompter): Promise<unknown[] | undefined> {
  const items = isObject(schema.items) ? schema.items : {};
  const itemType = typeOf(items);
  const about = describe(schema);
  if (itemType === 'object' || Array.isArray(items.oneOf)) {
    if (about) prompter.say(`${field.label}: ${about}`);
    const out: unknown[] = [];
    while (out.length < MAX_ITEMS && (await confirm(prompter, `add ${out.length ? 'another' : 'an'} item to ${field.label}?`, field.required && out.length === 0))) {
      out.push(await fieldValue(items, { label: `${field.label}[${out.length}]`, required: true, depth: field.depth + 1 }, prompter));
    }
    return out.length || field.required ? out : undefined;
  }
  if (items.airbyte_secret === true) {
    // One secret per question: a comma-separated answer would have to be typed blind anyway.
    const out: unknown[] = [];
    while (out.length < MAX_ITEMS && (await confirm(prompter, `add ${out.length ? 'another' : 'a'} value to ${field.label}?`, field.required && out.length === 0))) {
      out.push(await scalarValue(items, { label: `${field.label}[${out.length}]`, required: true, depth: field.depth + 1 }, itemType, true, undefined, prompter));
    }
    return out.length || field.required ? out : undefined;
  }
  const fallback = Array.isArray(schema.default) ? schema.default : undefined;
  if (about) prompter.say(`${field.label}: ${about}`);
  const question = `${field.label} (comma-separated${field.required ? '' : ', optional'})${fallback ? ` [${fallback.join(',')}]` : ''}: `;
  for (let i = 0; i < MAX_TRIES; i++) {
    const answer = (await prompter.ask(question)).trim();
    if (answer === '') {
      if (fallback) return fallback;
      if (!field.required) return undefined;
      prompter.say(`  ${field.label} is required`);
      continue;
    }
    const parts = answer.split(',').map((p) => p.trim());
    if (itemType === 'integer' || itemType === 'number') {
      const numbers = parts.map(Number);
      if (numbers.every((n) => Number.isFinite(n) && (itemType === 'number' || Number.isInteger(n)))) return numbers;
      prompter.say(`  every item of ${field.label} must be ${itemType === 'integer' ? 'a whole number' : 'a number'}`);
      continue;
    }
    return parts;
  }
  throw new UsageError(`${field.label}: no valid answer after ${MAX_TRIES} tries`);
}
