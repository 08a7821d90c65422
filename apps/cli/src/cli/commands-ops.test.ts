import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cofferHome } from '../home';
import { auditTargets } from './commands-ops';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const freshHome = () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-audit-'));
  dirs.push(dir);
  return cofferHome(dir, dir);
};

describe('where coffer audit verify reads', () => {
  it('DATABASE_URL first, with every schema or the ones asked for', async () => {
    const home = freshHome();
    expect(await auditTargets(home, { DATABASE_URL: 'postgres://u@db:5432/coffer' })).toEqual([{ url: 'postgres://u@db:5432/coffer', schemas: ['auth', 'secrets', 'config', 'sync'], source: 'DATABASE_URL' }]);
    expect((await auditTargets(home, { DATABASE_URL: 'postgres://u@db:5432/coffer' }, ['secrets']))[0]!.schemas).toEqual(['secrets']);
  });

  it("else the running stack's services, each with its own database and schema", async () => {
    const home = freshHome();
    mkdirSync(join(home.dir, 'stack-env'));
    writeFileSync(join(home.dir, 'stack-env', 'auth.env'), 'DATABASE_URL=postgres://postgres:pw@127.0.0.1:54329/coffer\nAUTH_DB_SCHEMA=auth\n');
    writeFileSync(join(home.dir, 'stack-env', 'secrets.env'), 'DATABASE_URL=postgres://postgres:pw@127.0.0.1:54329/coffer\n');
    writeFileSync(join(home.dir, 'stack-env', 'sync-worker.env'), 'DATABASE_URL=postgres://postgres@other:5432/sync\nSYNC_WORKER_DB_SCHEMA=jobs\n');
    const targets = await auditTargets(home, {});
    expect(targets.map((t) => [t.url, t.schemas])).toEqual([
      ['postgres://postgres:pw@127.0.0.1:54329/coffer', ['auth', 'secrets']],
      ['postgres://postgres@other:5432/sync', ['jobs']],
    ]);
    expect(targets[0]!.source).toContain('the running development stack');
  });

  it("else the embedded Postgres the stack recorded, never a guessed 127.0.0.1:5432", async () => {
    const home = freshHome();
    writeFileSync(home.stateFile, JSON.stringify({ endpoints: { postgres: '127.0.0.1:54329' }, pids: {} }));
    writeFileSync(home.credentialsFile, JSON.stringify({ postgres: { password: 'p@ss' } }));
    expect(await auditTargets(home, {})).toEqual([expect.objectContaining({ url: 'postgres://postgres:p%40ss@127.0.0.1:54329/coffer', schemas: ['auth', 'secrets', 'config', 'sync'] })]);
    await expect(auditTargets(freshHome(), {})).rejects.toMatchObject({ code: 'failed_precondition' });
  });
});
