import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const here = join(dirname(fileURLToPath(import.meta.url)), '..');
// A network namespace of its own (root only) is a machine where nothing answers on 5432 or 4222.
const isolated = spawnSync('unshare', ['-n', 'true']).status === 0;
const leftovers = () => readdirSync(tmpdir()).filter((n) => n.startsWith('coffer-test-postgres-') || n.startsWith('coffer-test-nats-'));

describe('the test servers where none is configured', () => {
  it.skipIf(!isolated)('starts an embedded Postgres and a nats-server child for the run, and removes them afterwards', () => {
    const before = leftovers();
    const env: NodeJS.ProcessEnv = { ...process.env, COFFER_TEST_NO_DOCKER: '1' };
    delete env.DATABASE_URL;
    delete env.NATS_URL;
    for (const key of Object.keys(env)) if (key.startsWith('VITEST')) delete env[key];
    const run = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && exec npx vitest run src/testing.int.test.ts'], { cwd: here, env, encoding: 'utf8', timeout: 240_000 });
    const output = `${run.stdout}${run.stderr}`;
    expect(run.status, output).toBe(0);
    expect(output).toMatch(/the tests use an embedded Postgres \(127\.0\.0\.1:\d+\)/);
    expect(output).toMatch(/the tests use a nats-server child \(nats:\/\/127\.0\.0\.1:\d+\)/);
    expect(output).toMatch(/2 passed/);
    expect(leftovers()).toEqual(before);
  }, 300_000);
});
