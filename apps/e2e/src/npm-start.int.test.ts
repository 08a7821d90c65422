import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authV1, configV1 } from '@coffer/contracts';
import { cofferHome, type SavedStack, type StackState } from '@coffer/cli';
import { createPromiseClient, createServiceTokenProvider } from '@coffer/rpc';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const canary = `canary-npm-start-${Math.random().toString(36).slice(2)}`;
const otelAttributes = 'deployment.environment=npm-start-e2e';

/** One `npm start`, spawned as a terminal runs a foreground job: a process group of its own. */
interface Launch {
  npm: ChildProcess;
  output: () => string;
  state: StackState;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Every process on the machine with its process group and command line (Linux /proc). */
function processes(): { pid: number; pgid: number; cmdline: string }[] {
  const out = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces) start after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z') continue;
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
      out.push({ pid: Number(entry), pgid: Number(fields[2]), cmdline });
    } catch {
      // exited while we looked
    }
  }
  return out;
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    try {
      return statSync(path).isDirectory() ? filesUnder(path) : [path];
    } catch {
      return [];
    }
  });
}

async function waitFor(what: string, done: () => boolean, timeoutMs: number, onTimeout: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms\n${onTimeout()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('npm start: embedded Postgres, a nats-server child and the four services from a fresh home', () => {
  const home = cofferHome(mkdtempSync(join(tmpdir(), 'coffer-home-')), root);
  // The launcher's TMPDIR: whatever it or its children write to "the temp folder" lands here, to be searched for keys.
  const scratch = mkdtempSync(join(tmpdir(), 'coffer-tmp-'));
  const repoHome = join(root, '.coffer');
  const repoHomeBefore = filesUnder(repoHome).map((f) => `${f}:${statSync(f).mtimeMs}`);
  const launches: Launch[] = [];
  let first: Launch;
  let workspaceId = '';
  let sourceId = '';
  let sourceUrl = '';

  async function npmStart(): Promise<Launch> {
    const env: NodeJS.ProcessEnv = { ...process.env, COFFER_HOME: home.dir, TMPDIR: scratch, LOG_LEVEL: 'debug', OTEL_RESOURCE_ATTRIBUTES: otelAttributes };
    // What a new user has: no egress setting (the development stack lets connectors reach 127.0.0.1 by itself).
    delete env.SYNC_WORKER_EGRESS_ALLOW;
    // A machine where no Postgres or NATS is configured: the stack must bring its own.
    delete env.DATABASE_URL;
    delete env.NATS_URL;
    for (const key of Object.keys(env)) if (key.startsWith('VITEST')) delete env[key];
    const npm = spawn('npm', ['start', '--', '--free-ports'], { cwd: root, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    npm.stdout!.setEncoding('utf8').on('data', (c: string) => (text += c));
    npm.stderr!.setEncoding('utf8').on('data', (c: string) => (text += c));
    const launch = { npm, output: () => text, state: undefined as unknown as StackState };
    launches.push(launch);
    await waitFor('"Coffer is up"', () => text.includes('Coffer is up') || npm.exitCode !== null, 400_000, () => text);
    if (!text.includes('Coffer is up')) throw new Error(`npm start exited with ${npm.exitCode} before the stack was up:\n${text}`);
    await waitFor('Ctrl-C hint', () => text.includes('Ctrl-C stops everything'), 5_000, () => text);
    launch.state = JSON.parse(readFileSync(home.stateFile, 'utf8')) as StackState;
    return launch;
  }

  /** What a terminal's Ctrl-C does: SIGINT to the whole foreground process group (npm, sh, the launcher). */
  async function ctrlC(launch: Launch): Promise<void> {
    process.kill(-launch.npm.pid!, 'SIGINT');
    const pids = [launch.npm.pid!, launch.state.launcherPid, ...Object.values(launch.state.pids)];
    await waitFor('every process of the stack exiting', () => pids.every((pid) => !alive(pid)), 90_000, () => launch.output());
  }

  function saved(): SavedStack {
    return JSON.parse(readFileSync(home.credentialsFile, 'utf8')) as SavedStack;
  }

  async function applicationClients(state: StackState) {
    const seed = saved().seed!;
    const auth = createPromiseClient(authV1.AuthServiceClient, state.endpoints.auth);
    const { accessToken } = await auth.issueApplicationToken({ clientId: seed.application.clientId, clientSecret: seed.application.clientSecret });
    auth.close();
    return createPromiseClient(configV1.ConfigServiceClient, state.endpoints.config, { tokenProvider: async () => accessToken });
  }

  beforeAll(async () => {
    first = await npmStart();
  }, 420_000);

  afterAll(async () => {
    for (const launch of launches) {
      if (launch.npm.exitCode === null && launch.npm.signalCode === null) process.kill(-launch.npm.pid!, 'SIGINT');
      const pids = launch.state ? [launch.state.launcherPid, ...Object.values(launch.state.pids)] : [];
      await waitFor('the stack stopping', () => pids.every((pid) => !alive(pid)), 60_000).catch(() => {
        for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
      });
    }
    await rm(home.dir, { recursive: true, force: true });
    await rm(scratch, { recursive: true, force: true });
  }, 120_000);

  it('shows its progress, then prints the endpoints and a token command that works', async () => {
    const text = first.output();
    const progress = ['[1/8] Postgres', '[2/8] NATS', '[3/8] auth listening', '[4/8] secrets listening', '[5/8] config listening', '[6/8] sync-worker listening', '[7/8] edge listening', '[8/8] created organization'];
    const at = progress.map((p) => text.indexOf(p));
    expect(at.every((i) => i >= 0), text).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    for (const endpoint of Object.values(first.state.endpoints)) expect(text).toContain(endpoint);
    expect(first.state.pids.postgres).toBeGreaterThan(0);
    expect(first.state.pids['nats-server']).toBeGreaterThan(0);
    // The launcher hands OTEL_* and LOG_LEVEL on to every service.
    for (const service of ['auth', 'secrets', 'config', 'sync-worker', 'edge'] as const) {
      const environ = readFileSync(`/proc/${first.state.pids[service]}/environ`, 'utf8').split('\0');
      expect(environ, service).toContain(`OTEL_RESOURCE_ATTRIBUTES=${otelAttributes}`);
      expect(environ, service).toContain('LOG_LEVEL=debug');
    }
    expect(readFileSync(join(home.logsDir, 'auth.log'), 'utf8')).toMatch(/"level":20/);
    // The edge answers over HTTP: its OpenAPI document and the widget page.
    const openapi = await fetch(`http://${first.state.endpoints.edge}/api/v1/openapi.json`);
    expect(openapi.status).toBe(200);
    expect(((await openapi.json()) as { openapi: string }).openapi).toMatch(/^3\./);
    expect((await fetch(`http://${first.state.endpoints.edge}/widget/`)).status).toBe(200);

    // The printed command, as a user would paste it (npx buf is the repository's own buf).
    const block = text.slice(text.indexOf('An application token'));
    const command = block.split('\n').slice(1, 4).join(' ').replace(/\\/g, ' ').trim().split(/\s+/);
    expect(command.slice(0, 3)).toEqual(['npx', 'buf', 'curl']);
    const { stdout } = await run(join(root, 'node_modules/.bin/buf'), command.slice(2), { cwd: tmpdir() });
    const token = JSON.parse(stdout) as { accessToken: string; expiresIn: number };
    expect(token.accessToken.split('.')).toHaveLength(3);
    expect(token.expiresIn).toBeGreaterThan(0);
  }, 60_000);

  it('answers real calls: a workspace, a definition, a source with a secret that reads back masked', async () => {
    const config = await applicationClients(first.state);
    const operatorTokens = createServiceTokenProvider({ authAddress: first.state.endpoints.auth, ...saved().credentials.clients.operator, audience: 'config' });
    const operator = createPromiseClient(configV1.ConfigServiceClient, first.state.endpoints.config, { tokenProvider: operatorTokens });
    try {
      const builtins = (await operator.listConnectorDefinitions({ page: { pageSize: 500, pageToken: '' }, actorType: configV1.ActorType.ACTOR_TYPE_UNSPECIFIED })).definitions;
      expect(builtins.map((d) => d.connector).sort()).toEqual(['builtin:http-json', 'builtin:postgres']);
      const httpSource = builtins.find((d) => d.connector === 'builtin:http-json')!;

      const registered = (
        await operator.registerConnectorDefinition({
          name: 'Weather API',
          actorType: configV1.ActorType.ACTOR_TYPE_SOURCE,
          connector: 'builtin:http-json',
          specJson: JSON.stringify({
            type: 'object',
            required: ['url', 'api_token'],
            properties: { url: { type: 'string' }, api_token: { type: 'string', airbyte_secret: true } },
          }),
        })
      ).definition!;
      expect(registered.definitionId).toMatch(/^[0-9a-f-]{36}$/);

      workspaceId = (await config.createWorkspace({ name: 'first start', organizationId: '' })).workspace!.workspaceId;
      sourceUrl = 'https://api.example.com/records';
      for (const definitionId of [httpSource.definitionId, registered.definitionId]) {
        const created = (await config.createActor({ workspaceId, definitionId, name: 'api', configJson: JSON.stringify({ url: sourceUrl, api_token: canary }) })).actor!;
        expect(JSON.parse(created.configJson)).toEqual({ url: sourceUrl, api_token: '**********' });
        const read = await config.getActor({ actorId: created.actorId });
        expect(JSON.parse(read.actor!.configJson)).toEqual({ url: sourceUrl, api_token: '**********' });
        expect(JSON.stringify(read)).not.toContain(canary);
        if (!sourceId) sourceId = created.actorId;
      }
      for (const file of filesUnder(home.logsDir)) expect(readFileSync(file, 'utf8'), file).not.toContain(canary);
    } finally {
      config.close();
      operator.close();
      operatorTokens.close();
    }
  }, 60_000);

  /** `npx coffer …` from the repository root, as a user runs it against this stack's home. */
  async function coffer(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const env: NodeJS.ProcessEnv = { ...process.env, COFFER_HOME: home.dir };
    delete env.DATABASE_URL;
    delete env.NATS_URL;
    for (const key of Object.keys(env)) if (key.startsWith('VITEST')) delete env[key];
    return run('npx', ['coffer', ...args], { cwd: root, env, timeout: 180_000 }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }),
    );
  }

  it('the coffer CLI: login caches a token (0600), commands answer in --json, errors are one line with meaningful exit codes, the demo completes', async () => {
    const began = Date.now();
    const login = await coffer('login', '--json');
    expect(login.code, login.stderr).toBe(0);
    const cached = JSON.parse(login.stdout) as { clientId: string; cachedIn: string };
    expect(cached.clientId).toBe(saved().seed!.application.clientId);
    expect(cached.cachedIn).toBe(join(home.dir, 'cli-login.json'));
    expect(statSync(cached.cachedIn).mode & 0o777).toBe(0o600);
    console.log(`coffer login: ${Date.now() - began} ms (npx, tsx and one call)`);

    const created = await coffer('workspaces', 'create', 'from the cli', '--json');
    expect(created.code, created.stderr).toBe(0);
    const workspace = JSON.parse(created.stdout) as { workspaceId: string; name: string };
    expect(workspace.name).toBe('from the cli');
    const listed = JSON.parse((await coffer('workspaces', 'list', '--json')).stdout) as { workspaceId: string }[];
    expect(listed.map((w) => w.workspaceId)).toContain(workspace.workspaceId);
    const definitions = JSON.parse((await coffer('definitions', 'list', '--json')).stdout) as { definitionId: string; connector: string; type: string }[];
    const httpSource = definitions.find((d) => d.connector === 'builtin:http-json' && d.type === 'source')!;
    expect(httpSource).toBeDefined();

    // The config file holds a secret: the CLI's output shows only its mask.
    const files = mkdtempSync(join(tmpdir(), 'coffer-cli-'));
    try {
      const configFile = join(files, 'source.json');
      writeFileSync(configFile, JSON.stringify({ url: 'https://api.example.com/cli', api_token: canary }));
      const source = await coffer('sources', 'create', '--workspace', workspace.workspaceId, '--definition', httpSource.definitionId, '--config', configFile, '--json');
      expect(source.code, source.stderr).toBe(0);
      expect(source.stdout + source.stderr).not.toContain(canary);
      const actor = JSON.parse(source.stdout) as { actorId: string; config: Record<string, string> };
      expect(actor.config).toEqual({ url: 'https://api.example.com/cli', api_token: '**********' });
      const shown = await coffer('sources', 'get', actor.actorId);
      expect(shown.code).toBe(0);
      expect(shown.stdout).toContain('"api_token":"**********"');
      expect(shown.stdout).not.toContain(canary);
      expect((await coffer('sources', 'delete', actor.actorId, '--json')).code).toBe(0);

      // A sync through the CLI: a source served here (answering only the canary) into the stack's own Postgres.
      const api = createServer((req, res) => {
        if (req.headers.authorization !== `Bearer ${canary}`) return void res.writeHead(401).end();
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([{ id: 1 }, { id: 2 }]));
      });
      await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
      try {
        const apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}/records`;
        writeFileSync(configFile, JSON.stringify({ url: apiUrl, api_token: canary }));
        const served = JSON.parse((await coffer('sources', 'create', '--workspace', workspace.workspaceId, '--definition', httpSource.definitionId, '--config', configFile, '--json')).stdout) as { actorId: string };
        writeFileSync(configFile, JSON.stringify({ url: apiUrl, api_token: 'not-the-canary' }));
        const refused = JSON.parse((await coffer('sources', 'create', '--workspace', workspace.workspaceId, '--definition', httpSource.definitionId, '--config', configFile, '--json')).stdout) as { actorId: string };
        const databaseUrl = new URL(readFileSync(join(home.dir, 'stack-env', 'config.env'), 'utf8').match(/^DATABASE_URL=(.*)$/m)![1]!);
        const destinationFile = join(files, 'destination.json');
        writeFileSync(destinationFile, JSON.stringify({ host: databaseUrl.hostname, port: Number(databaseUrl.port), database: 'coffer', username: decodeURIComponent(databaseUrl.username), password: decodeURIComponent(databaseUrl.password), schema: 'cli_e2e', table: 'records' }));
        const postgresDefinition = definitions.find((d) => d.connector === 'builtin:postgres')!;
        const destination = await coffer('destinations', 'create', '--workspace', workspace.workspaceId, '--definition', postgresDefinition.definitionId, '--config', destinationFile, '--json');
        expect(destination.code, destination.stderr).toBe(0);
        expect((JSON.parse(destination.stdout) as { config: { password: string } }).config.password).toBe('**********');
        const destinationId = (JSON.parse(destination.stdout) as { actorId: string }).actorId;
        const connect = async (sourceId: string) => {
          const made = await coffer('connections', 'create', '--workspace', workspace.workspaceId, '--source', sourceId, '--destination', destinationId, '--json');
          expect(made.code, made.stderr).toBe(0);
          return (JSON.parse(made.stdout) as { connectionId: string }).connectionId;
        };
        const ok = await coffer('sync', await connect(served.actorId), '--json');
        expect(ok.code, ok.stderr).toBe(0);
        expect(JSON.parse(ok.stdout)).toMatchObject({ status: 'succeeded', recordsSynced: 2 });
        expect(ok.stderr).toMatch(/sync [0-9a-f-]{36}: succeeded, 2 record\(s\)/);
        const { jobId } = JSON.parse(ok.stdout) as { jobId: string };
        const job = await coffer('jobs', 'show', jobId, '--json');
        expect(JSON.parse(job.stdout)).toMatchObject({ jobId, status: 'succeeded', recordsSynced: 2 });
        const failed = await coffer('sync', await connect(refused.actorId), '--json');
        expect(failed.code).toBe(1);
        // A credential the source refuses (no OAuth to refresh it) fails the job at once: no retry can cure it.
        expect(JSON.parse(failed.stdout)).toMatchObject({ status: 'failed', recordsSynced: 0, attempts: 1, failureCode: 'credential_rejected', failureReason: expect.stringMatching(/401/) as string });
        const jobs = await coffer('jobs', 'list', '--workspace', workspace.workspaceId, '--json');
        expect(jobs.code, jobs.stderr).toBe(0);
        const listedJobs = JSON.parse(jobs.stdout) as { jobId: string; status: string }[];
        expect(listedJobs.map((j) => j.status)).toEqual(['failed', 'succeeded']);
        expect(listedJobs[1]!.jobId).toBe(jobId);
      } finally {
        await new Promise<void>((r) => api.close(() => r()));
      }

      const gone = await coffer('sources', 'get', actor.actorId);
      expect(gone.code).toBe(1);
      expect(gone.stderr.trim()).toBe('error: not_found: no such actor');
    } finally {
      await rm(files, { recursive: true, force: true });
    }
    const usage = await coffer('sources', 'create', '--workspace', workspace.workspaceId);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('sources create: --definition is required');
    expect(usage.stderr).not.toMatch(/\n\s+at /);

    const demoBegan = Date.now();
    const demo = await coffer('demo');
    expect(demo.code, `${demo.stdout}\n${demo.stderr}`).toBe(0);
    for (const step of ['application token issued', 'scoped token issued', 'masked read: {"url":"http://127.0.0.1:', '"api_token":"**********"', 'updated to secret version 2', 'succeeded: 3 record(s)', 'presenting version 2', 'coffer.secrets.v1.SecretVersionWritten', 'coffer.sync.v1.SyncSucceeded', 'demo complete.']) {
      expect(demo.stdout, step).toContain(step);
    }
    expect(demo.stdout + demo.stderr).not.toMatch(/demo-v[12]-[0-9a-f]{24}/);
    console.log(`coffer demo: ${Date.now() - demoBegan} ms end to end`);
    for (const file of filesUnder(home.logsDir)) expect(readFileSync(file, 'utf8'), file).not.toContain(canary);
  }, 300_000);

  it('Ctrl-C stops the edge, then the services in reverse order, then NATS, then Postgres, and leaves no process and no key file outside the home', async () => {
    const groups = new Set([first.state.launcherPid, ...Object.values(first.state.pids)]);
    await ctrlC(first);
    const text = first.output();
    const order = ['stopped edge', 'stopped sync-worker', 'stopped config', 'stopped secrets', 'stopped auth', 'stopped NATS', 'stopped Postgres', 'stopped.'].map((s) => text.indexOf(s));
    expect(order.every((i) => i > 0), text).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);

    // Each server ran in a process group of its own: nothing of any of them (Postgres' backends included) is left.
    const left = processes().filter((p) => groups.has(p.pgid) || groups.has(p.pid) || p.cmdline.includes(home.dir));
    expect(left).toEqual([]);
    expect(existsSync(home.stateFile)).toBe(false);

    // No key, secret or password written anywhere but the home: not in the temp folder, not in the repository's .coffer/.
    const s = saved();
    const keyring = JSON.parse(readFileSync(home.keyringFile, 'utf8')) as { keys: { key: string }[] };
    const secrets = [
      ...keyring.keys.map((k) => k.key),
      (JSON.parse(s.credentials.signingKeyJwk) as { d: string }).d,
      ...Object.values(s.credentials.clients).map((c) => c.clientSecret),
      s.seed!.application.clientSecret,
      s.postgres!.password,
    ];
    expect(secrets.every((v) => typeof v === 'string' && v.length >= 16)).toBe(true);
    for (const file of filesUnder(scratch)) {
      const content = readFileSync(file, 'latin1');
      for (const secret of secrets) expect(content.includes(secret), `${file} holds a secret`).toBe(false);
    }
    expect(readdirSync(scratch).filter((n) => n.startsWith('coffer-stack-') || n.startsWith('pg-password-'))).toEqual([]);
    expect(filesUnder(repoHome).map((f) => `${f}:${statSync(f).mtimeMs}`)).toEqual(repoHomeBefore);
  }, 120_000);

  it('a second start against the same home reuses its data: the organization, the definitions and the workspace are still there', async () => {
    const seedBefore = saved().seed;
    const second = await npmStart();
    const text = second.output();
    expect(text).toContain('[1/8] Postgres (embedded): starting');
    expect(text).toContain(`organization "Development" from an earlier start`);
    expect(text).toContain('built-in connector definitions already registered');
    expect(saved().seed).toEqual(seedBefore);

    const config = await applicationClients(second.state);
    try {
      expect((await config.getWorkspace({ workspaceId })).workspace!.name).toBe('first start');
      const read = await config.getActor({ actorId: sourceId });
      expect(JSON.parse(read.actor!.configJson)).toEqual({ url: sourceUrl, api_token: '**********' });
      const defs = (await config.listConnectorDefinitions({ page: { pageSize: 500, pageToken: '' }, actorType: configV1.ActorType.ACTOR_TYPE_UNSPECIFIED })).definitions;
      expect(defs.filter((d) => d.connector === 'builtin:postgres')).toHaveLength(1);
      expect(defs.filter((d) => d.connector === 'builtin:http-json').map((d) => d.name).sort()).toEqual(['Coffer demo API', 'HTTP JSON API', 'Weather API']);
    } finally {
      config.close();
    }

    const groups = new Set([second.state.launcherPid, ...Object.values(second.state.pids)]);
    await ctrlC(second);
    expect(processes().filter((p) => groups.has(p.pgid) || groups.has(p.pid) || p.cmdline.includes(home.dir))).toEqual([]);
  }, 420_000);
});
