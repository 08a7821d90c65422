import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const dirs: string[] = [];
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
};

afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe('coffer stack without nats-server and without NATS_URL', () => {
  it('says how to get one and starts nothing', async () => {
    const home = tempDir('coffer-nonats-');
    const emptyPath = tempDir('coffer-path-');
    const env: NodeJS.ProcessEnv = { PATH: emptyPath, COFFER_HOME: home, HOME: home };
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'apps/cli/src/main.ts'), 'stack', '--free-ports'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(1);
    expect(out).toContain('nats-server was not found on the PATH');
    expect(out).toContain('apt-get install nats-server');
    expect(out).toContain('brew install nats-server');
    expect(out).toContain('NATS_URL');
    expect(out).not.toMatch(/^\s+at /m);
    expect(existsSync(join(home, 'postgres'))).toBe(false);
    expect(existsSync(join(home, 'stack.json'))).toBe(false);
  }, 60_000);
});
