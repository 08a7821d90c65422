import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { UsageError } from './args';
import { createPrompter, promptForConfig } from './prompt';

/** Runs the prompts against scripted answers, one per line; returns the config and everything shown. */
async function run(spec: unknown, answers: string[]) {
  const input = new PassThrough();
  const output = new PassThrough();
  let shown = '';
  output.setEncoding('utf8').on('data', (c: string) => (shown += c));
  input.end(answers.map((a) => `${a}\n`).join(''));
  const prompter = createPrompter(input, output);
  try {
    return { config: await promptForConfig(spec, prompter), shown: () => shown };
  } finally {
    prompter.close();
  }
}

const canary = 'canary-s3cr3t-7f1e';

describe('promptForConfig', () => {
  it('asks each field in order, applies defaults, checks numbers, reads a secret and never shows it', async () => {
    const spec = {
      type: 'object',
      required: ['host', 'port', 'password'],
      properties: {
        password: { type: 'string', airbyte_secret: true, order: 2, default: 'do-not-show-default' },
        host: { type: 'string', order: 0, description: 'Where the database listens.' },
        port: { type: 'integer', order: 1, default: 5432 },
        schema: { type: 'string', order: 3 },
      },
    };
    const { config, shown } = await run(spec, ['db.internal', 'not-a-port', '', canary, '']);
    expect(config).toEqual({ host: 'db.internal', port: 5432, password: canary });
    const text = shown();
    expect(text.indexOf('host')).toBeLessThan(text.indexOf('port'));
    expect(text).toContain('Where the database listens.');
    expect(text).toContain('port must be a whole number');
    expect(text).toContain('password (secret, not shown): ');
    expect(text).toContain('schema (optional): ');
    expect(text).not.toContain(canary);
    expect(text).not.toContain('do-not-show-default');
  });

  it('asks again for a required field left empty, and leaves an empty optional one out', async () => {
    const spec = { type: 'object', required: ['name'], properties: { name: { type: 'string' }, note: { type: 'string' } } };
    const { config, shown } = await run(spec, ['', 'acme', '']);
    expect(config).toEqual({ name: 'acme' });
    expect(shown()).toContain('name is required');
  });

  it('offers enums and oneOf branches by number, fills in const fields, walks nested objects', async () => {
    const spec = {
      type: 'object',
      required: ['mode', 'credentials'],
      properties: {
        mode: { type: 'string', enum: ['full', 'incremental'], default: 'incremental', order: 0 },
        credentials: {
          type: 'object',
          order: 1,
          oneOf: [
            { title: 'API key', required: ['auth_type', 'api_key'], properties: { auth_type: { const: 'key' }, api_key: { type: 'string', airbyte_secret: true } } },
            { title: 'OAuth', required: ['auth_type', 'client_id'], properties: { auth_type: { const: 'oauth' }, client_id: { type: 'string' }, client_secret: { type: 'string', airbyte_secret: true } } },
          ],
        },
        tuning: { type: 'object', order: 2, properties: { batch: { type: 'integer' } } },
        verbose: { type: 'boolean', default: false, order: 3 },
      },
    };
    const { config, shown } = await run(spec, ['', '2', 'my-client', canary, 'y', '50', 'yes']);
    expect(config).toEqual({ mode: 'incremental', credentials: { auth_type: 'oauth', client_id: 'my-client', client_secret: canary }, tuning: { batch: 50 }, verbose: true });
    expect(shown()).toContain('1) API key');
    expect(shown()).toContain('2) OAuth');
    expect(shown()).toContain('choose 1-2 [2]: ');
    expect(shown()).not.toContain(canary);
  });

  it('takes lists comma-separated, and array items one by one', async () => {
    const spec = {
      type: 'object',
      required: ['streams'],
      properties: {
        streams: { type: 'array', items: { type: 'string' }, order: 0 },
        ids: { type: 'array', items: { type: 'integer' }, order: 1 },
        headers: { type: 'array', order: 2, items: { type: 'object', required: ['name', 'value'], properties: { name: { type: 'string' }, value: { type: 'string', airbyte_secret: true } } } },
      },
    };
    const { config, shown } = await run(spec, ['users, orders', '1,x', '1,2', 'y', 'X-Key', canary, 'n']);
    expect(config).toEqual({ streams: ['users', 'orders'], ids: [1, 2], headers: [{ name: 'X-Key', value: canary }] });
    expect(shown()).toContain('every item of ids must be a whole number');
    expect(shown()).not.toContain(canary);
  });

  it('on a terminal, echoes what is typed for a plain field and nothing for a secret', async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    let shown = '';
    output.setEncoding('utf8').on('data', (c: string) => (shown += c));
    const prompter = createPrompter(input, output, true);
    const spec = { type: 'object', required: ['user', 'pass'], properties: { user: { type: 'string', order: 0 }, pass: { type: 'string', airbyte_secret: true, order: 1 } } };
    const done = promptForConfig(spec, prompter);
    // Keystrokes as a terminal sends them, one chunk each.
    for (const key of [...'alice', '\r', ...canary, '\r']) {
      input.write(key);
      await new Promise((r) => setImmediate(r));
    }
    expect(await done).toEqual({ user: 'alice', pass: canary });
    prompter.close();
    expect(shown).toContain('alice');
    expect(shown).not.toContain(canary);
    expect(shown).not.toContain(canary.slice(0, 4));
  });

  it('refuses, as a usage error, input that ends early or never gives a valid answer', async () => {
    const spec = { type: 'object', required: ['a', 'b'], properties: { a: { type: 'string' }, b: { type: 'string' } } };
    await expect(run(spec, ['only-a'])).rejects.toThrow(new UsageError('the input ended before the config was complete'));
    await expect(run({ type: 'object', required: ['n'], properties: { n: { type: 'number' } } }, ['x', 'x', 'x', 'x', 'x'])).rejects.toThrow(/n: no valid answer after 5 tries/);
    await expect(run('not a spec', [])).rejects.toBeInstanceOf(UsageError);
  });
});
