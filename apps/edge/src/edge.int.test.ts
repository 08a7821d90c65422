import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configV1, type MessagingNamespace } from '@coffer/contracts';
import { startStack, type Stack } from '@coffer/cli';
import { createPromiseClient, createServiceTokenProvider, type ServiceTokenProvider } from '@coffer/rpc';
import { createTestDatabase, deleteStreams, testNatsUrl, uniqueNamespace, type TestDatabase } from '@coffer/testing';
import { cofferRegistry } from './forwarded-methods';
import { integrationsRoutes } from './integrations-api';
import { startEdge, type RunningEdge } from './start-edge';

const here = dirname(fileURLToPath(import.meta.url));
const OPS_ORIGIN = 'https://ops.example.test';
const EVIL_ORIGIN = 'https://evil.example.test';
const MAX_BYTES = 64 * 1024;
const BURST = 8;
const specsDir = join(process.env.COFFER_CONFORMANCE_DIR ?? join(here, '../../../../shared/conformance'), 'connector-specs');
const chromium = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => p && existsSync(p));

interface Answer {
  status: number;
  headers: Headers;
  body: any;
}

describe('the edge over real processes', () => {
  let db: TestDatabase;
  let ns: MessagingNamespace;
  let stack: Stack;
  let edge: RunningEdge;
  let host: Server;
  let hostOrigin = '';
  let operatorAuth: ServiceTokenProvider;
  let operatorConfig: ServiceTokenProvider;
  let clientId = '';
  let clientSecret = '';
  let nc: NatsConnection;
  const natsSeen: string[] = [];
  const pages = new Map<string, string>();

  /** One Connect call with JSON, as `curl` would make it. */
  async function call(path: string, body: unknown, headers: Record<string, string> = {}, method = 'POST'): Promise<Answer> {
    const res = await fetch(`${edge.url}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...headers },
      ...(method === 'POST' && { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: res.status, headers: res.headers, body: parsed };
  }
  const auth = (method: string, body: unknown, headers?: Record<string, string>) => call(`/coffer.auth.v1.AuthService/${method}`, body, headers);
  const config = (method: string, body: unknown, headers?: Record<string, string>) => call(`/coffer.config.v1.ConfigService/${method}`, body, headers);
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  async function applicationToken(): Promise<string> {
    const res = await auth('IssueApplicationToken', { clientId, clientSecret });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body.accessToken as string;
  }
  async function scopedToken(user = 'end-user-1'): Promise<{ token: string; workspaceId: string }> {
    const res = await auth('IssueScopedToken', { externalUserId: user, createWorkspace: true }, bearer(await applicationToken()));
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return { token: res.body.accessToken, workspaceId: res.body.workspaceId };
  }
  async function widgetToken(origin = hostOrigin, user = 'end-user-1'): Promise<string> {
    const res = await auth('IssueWidgetToken', { allowedOrigin: origin }, bearer((await scopedToken(user)).token));
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body.accessToken as string;
  }
  async function registerDefinition(name: string, spec: unknown): Promise<string> {
    const client = createPromiseClient(configV1.ConfigServiceClient, stack.services.config.address, { tokenProvider: operatorConfig });
    try {
      const res = await client.registerConnectorDefinition({ name, actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'builtin:http-json', specJson: JSON.stringify(spec) });
      return res.definition!.definitionId;
    } finally {
      client.close();
    }
  }

  beforeAll(async () => {
    db = await createTestDatabase('coffer_edge');
    ns = uniqueNamespace();
    nc = await connect({ servers: testNatsUrl() });
    const sub = nc.subscribe(`${ns.subjectRoot}.>`);
    void (async () => {
      for await (const m of sub) natsSeen.push(`${m.subject} ${JSON.stringify(m.headers ? [...m.headers.keys()].map((k) => [k, m.headers!.get(k)]) : [])} ${m.string()}`);
    })();
    // The platform's page, on an origin of its own (localhost, where the edge is 127.0.0.1).
    host = createServer((req, res) => {
      const page = pages.get(new URL(req.url ?? '/', 'http://x').pathname);
      res.writeHead(page ? 200 : 404, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page ?? 'not found');
    });
    await new Promise<void>((resolve) => host.listen(0, '127.0.0.1', resolve));
    hostOrigin = `http://localhost:${(host.address() as AddressInfo).port}`;

    stack = await startStack({ databaseUrl: db.url, natsUrl: testNatsUrl(), namespace: ns });
    operatorAuth = createServiceTokenProvider({ authAddress: stack.services.auth.address, ...stack.credentials.clients.operator, audience: 'auth' });
    operatorConfig = createServiceTokenProvider({ authAddress: stack.services.auth.address, ...stack.credentials.clients.operator, audience: 'config' });
    edge = await startEdge({
      AUTH_ADDRESS: stack.services.auth.address,
      CONFIG_ADDRESS: stack.services.config.address,
      EDGE_ALLOWED_ORIGINS: OPS_ORIGIN,
      EDGE_MAX_REQUEST_BYTES: String(MAX_BYTES),
      EDGE_RATE_PER_SECOND: '0.5',
      EDGE_RATE_BURST: String(BURST),
      EDGE_ANONYMOUS_RATE_BURST: '10000',
    });
    // Operator calls through the edge too: a service token is not for the edge, so these go straight to auth.
    const authClient = createPromiseClient((await import('@coffer/contracts')).authV1.AuthServiceClient, stack.services.auth.address, { tokenProvider: operatorAuth });
    try {
      const org = await authClient.createOrganization({ name: 'Edge test' });
      const app = await authClient.createApplication({ organizationId: org.organization!.organizationId, name: 'platform', allowedOrigins: [hostOrigin] });
      clientId = app.application!.clientId;
      clientSecret = app.clientSecret;
    } finally {
      authClient.close();
    }
  }, 240_000);

  afterAll(async () => {
    operatorAuth?.close();
    operatorConfig?.close();
    await edge?.stop();
    await stack?.stop();
    await nc?.close();
    await new Promise<void>((resolve) => (host ? host.close(() => resolve()) : resolve()));
    await deleteStreams(testNatsUrl(), ns);
    await db?.drop();
  }, 60_000);

  it('forwards Connect JSON calls to auth and config with the caller token, and maps errors code for code', async () => {
    const { token, workspaceId } = await scopedToken();
    const ws = await config('GetWorkspace', { workspaceId }, bearer(token));
    expect(ws.status, JSON.stringify(ws.body)).toBe(200);
    expect(ws.body.workspace.workspaceId).toBe(workspaceId);

    const jwks = await auth('GetJwks', {});
    expect(JSON.parse(jwks.body.jwksJson).keys.length).toBeGreaterThan(0);

    const bad = await config('GetActor', { actorId: 'not-a-uuid' }, bearer(token));
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe('invalid_argument');
    expect(bad.body.message).toContain('actor_id');
    expect(JSON.parse(bad.headers.get('coffer-error-details')!)[0].field).toBe('actor_id');

    const missing = await config('GetActor', { actorId: '00000000-0000-4000-8000-000000000001' }, bearer(token));
    expect([missing.status, missing.body.code]).toEqual([404, 'not_found']);
    const anonymous = await config('GetWorkspace', { workspaceId });
    expect([anonymous.status, anonymous.body.code]).toEqual([401, 'unauthenticated']);
    const forged = await config('GetWorkspace', { workspaceId }, bearer(`${token.slice(0, -4)}AAAA`));
    expect([forged.status, forged.body.code]).toEqual([401, 'unauthenticated']);
    const wrongSecret = await auth('IssueApplicationToken', { clientId, clientSecret: 'x'.repeat(40) });
    expect([wrongSecret.status, wrongSecret.body.code]).toEqual([401, 'unauthenticated']);
    // The sync plan and service tokens are not served.
    expect((await config('GetSyncPlan', { connectionId: workspaceId }, bearer(token))).status).toBe(404);
    expect((await auth('IssueServiceToken', { clientId: 'config', clientSecret: 'x'.repeat(20), audience: 'config' })).status).toBe(404);
    // Error messages stay bounded as the services bound them.
    const long = await config('CreateWorkspace', { name: 'n'.repeat(50_000), organizationId: '' }, bearer(await applicationToken()));
    expect(long.status).toBe(400);
    expect(Buffer.byteLength(long.body.message)).toBeLessThanOrEqual(1024);
  });

  it('serves gRPC-Web and gRPC (HTTP/2) with the same errors', async () => {
    const { token, workspaceId } = await scopedToken();
    const service = cofferRegistry().getService('coffer.config.v1.ConfigService')!;
    const headers = bearer(token);
    for (const transport of [createGrpcWebTransport({ baseUrl: edge.url, httpVersion: '1.1' }), createGrpcTransport({ baseUrl: edge.url })]) {
      const client = createClient(service, transport) as any;
      const res = await client.getWorkspace({ workspaceId }, { headers });
      expect(res.workspace.workspaceId).toBe(workspaceId);
      const err = await client.getActor({ actorId: 'nope' }, { headers }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.InvalidArgument);
      expect((err as ConnectError).rawMessage).toContain('actor_id');
    }
    // A grpc-js client of the ts-proto code talks to the edge as to config itself.
    const raw = createPromiseClient(configV1.ConfigServiceClient, edge.url.replace('http://', ''), { tokenProvider: async () => token });
    try {
      expect((await raw.getWorkspace({ workspaceId })).workspace!.workspaceId).toBe(workspaceId);
      await expect(raw.getActor({ actorId: 'nope' })).rejects.toMatchObject({ code: 'invalid_argument' });
    } finally {
      raw.close();
    }
  });

  it('allows a widget token only from the origin it is bound to, at preflight and at call, and passes the origin on', async () => {
    const widget = await widgetToken();
    const path = '/coffer.config.v1.ConfigService/ListConnectorDefinitions';
    const preflight = (origin: string, headers: Record<string, string> = {}) =>
      fetch(`${edge.url}${path}`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type', ...headers } });

    const ok = await preflight(hostOrigin);
    expect(ok.status).toBe(204);
    expect(ok.headers.get('access-control-allow-origin')).toBe(hostOrigin);
    expect(ok.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
    const okWithToken = await preflight(hostOrigin, bearer(widget));
    expect(okWithToken.status).toBe(204);

    const refused = await preflight(EVIL_ORIGIN, bearer(widget));
    expect(refused.status).toBe(403);
    expect(refused.headers.get('access-control-allow-origin')).toBeNull();
    // A preflight with no token, for a path the widget does not use, from an origin nobody allowed.
    const other = await fetch(`${edge.url}/coffer.auth.v1.AuthService/CreateApplication`, { method: 'OPTIONS', headers: { origin: EVIL_ORIGIN, 'access-control-request-method': 'POST' } });
    expect(other.status).toBe(403);

    const allowed = await config('ListConnectorDefinitions', {}, { ...bearer(widget), origin: hostOrigin });
    expect(allowed.status, JSON.stringify(allowed.body)).toBe(200);
    expect(allowed.headers.get('access-control-allow-origin')).toBe(hostOrigin);

    const elsewhere = await config('ListConnectorDefinitions', {}, { ...bearer(widget), origin: EVIL_ORIGIN });
    expect([elsewhere.status, elsewhere.body.code]).toEqual([403, 'permission_denied']);
    expect(elsewhere.headers.get('access-control-allow-origin')).toBeNull();
    // Without any Origin the edge forwards, and config itself refuses the widget token: the origin is checked there too.
    const noOrigin = await config('ListConnectorDefinitions', {}, bearer(widget));
    expect([noOrigin.status, noOrigin.body.code]).toEqual([403, 'permission_denied']);
    expect(noOrigin.body.message).toContain('origin');
  });

  it('allows application tokens only from an origin of the operator allow-list', async () => {
    const app = await applicationToken();
    const refused = await config('ListConnectorDefinitions', {}, { ...bearer(app), origin: hostOrigin });
    expect([refused.status, refused.body.code]).toEqual([403, 'permission_denied']);
    const preflight = await fetch(`${edge.url}/coffer.config.v1.ConfigService/ListConnectorDefinitions`, {
      method: 'OPTIONS',
      headers: { origin: hostOrigin, 'access-control-request-method': 'POST', ...bearer(app) },
    });
    expect(preflight.status).toBe(403);
    const allowed = await config('ListConnectorDefinitions', {}, { ...bearer(app), origin: OPS_ORIGIN });
    expect(allowed.status).toBe(200);
    expect(allowed.headers.get('access-control-allow-origin')).toBe(OPS_ORIGIN);
  });

  it('answers a body over the size limit with 413 and calls beyond a token burst with 429 and Retry-After', async () => {
    const { token, workspaceId } = await scopedToken('rate-user');
    const big = await config('GetWorkspace', JSON.stringify({ workspaceId, pad: 'x'.repeat(MAX_BYTES + 10) }), bearer(token));
    expect([big.status, big.body.code]).toEqual([413, 'resource_exhausted']);

    const statuses: number[] = [];
    let limited: Answer | undefined;
    for (let i = 0; i < BURST + 3 && !limited; i++) {
      const res = await config('GetWorkspace', { workspaceId }, bearer(token));
      statuses.push(res.status);
      if (res.status === 429) limited = res;
    }
    expect(statuses.slice(0, BURST - 1).every((s) => s === 200 || s === 413)).toBe(true);
    expect(limited, statuses.join(',')).toBeDefined();
    expect(limited!.body.code).toBe('resource_exhausted');
    expect(Number(limited!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // Another token has its own budget.
    const other = await scopedToken('rate-user-2');
    expect((await config('GetWorkspace', { workspaceId: other.workspaceId }, bearer(other.token))).status).toBe(200);
    // gRPC callers get RESOURCE_EXHAUSTED.
    const client = createClient(cofferRegistry().getService('coffer.config.v1.ConfigService')!, createGrpcTransport({ baseUrl: edge.url })) as any;
    const err = await client.getWorkspace({ workspaceId }, { headers: bearer(token) }).catch((e: unknown) => e);
    expect((err as ConnectError).code).toBe(Code.ResourceExhausted);
  });

  it('serves exactly the routes its OpenAPI document lists, mapped onto config', async () => {
    const doc = JSON.parse(readFileSync(join(here, '../openapi.json'), 'utf8'));
    const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    expect(documented.sort()).toEqual(integrationsRoutes.map((r) => `${r.method} ${r.path}`).sort());
    const served = await fetch(`${edge.url}/api/v1/openapi.json`);
    expect(await served.json()).toEqual(doc);

    const definitionId = await registerDefinition('OpenAPI source', { type: 'object', required: ['api_key'], properties: { api_key: { type: 'string', airbyte_secret: true }, region: { type: 'string', enum: ['eu', 'us'] } } });
    const { token, workspaceId } = await scopedToken('openapi-user');
    const list = await call('/api/v1/integrations/connectors?actor_type=source', undefined, bearer(token), 'GET');
    expect(list.status).toBe(200);
    const listed = list.body.connectors.find((c: { id: string }) => c.id === definitionId);
    expect(listed).toMatchObject({ name: 'OpenAPI source', actor_type: 'source', spec: { required: ['api_key'] } });
    for (const field of doc.paths['/api/v1/integrations/connectors'].get.responses['200'].content['application/json'].schema.required) expect(list.body).toHaveProperty(field);

    const created = await call('/api/v1/integrations/connectors', { definition_id: definitionId, name: 'mine', configuration: { api_key: 'openapi-canary-value-123', region: 'eu' } }, bearer(token));
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    for (const field of doc.components.schemas.Source.required) expect(created.body).toHaveProperty(field);
    expect(created.body).toMatchObject({ workspace_id: workspaceId, configuration: { api_key: '**********', region: 'eu' } });

    const invalid = await call('/api/v1/integrations/connectors', { definition_id: definitionId, name: 'mine', configuration: { region: 'mars' } }, bearer(token));
    expect([invalid.status, invalid.body.code]).toEqual([400, 'invalid_argument']);
    expect(invalid.body.details.map((d: { field: string }) => d.field)).toEqual(expect.arrayContaining(['config_json:$.api_key']));
    const noDefinition = await call('/api/v1/integrations/connectors', { configuration: {} }, bearer(token));
    expect([noDefinition.status, noDefinition.body.details[0].field]).toEqual([400, 'definition_id']);
  });

  describe.skipIf(!chromium)('the connect widget in Chromium', () => {
    const cases = [
      { file: 'source-hubspot', canary: 'canary-hubspot-5e1f0c9a7b' },
      { file: 'source-github', canary: 'canary-github-8d2b4a6c1e' },
      { file: 'destination-ragie', canary: 'canary-ragie-3f7a9e2d5c' },
    ];

    it('renders three real specs, stores each source with its secret split out, shows the mask on reload, and leaks the canary nowhere', async () => {
      const { chromium: pw } = await import('playwright-core');
      const outDir = join(here, '../test-output');
      mkdirSync(outDir, { recursive: true });
      const browser = await pw.launch({ executablePath: chromium!, args: ['--no-sandbox'] });
      const seenAfterSubmit: string[] = [];
      try {
        for (const c of cases) {
          const spec = JSON.parse(readFileSync(join(specsDir, `${c.file}.spec.json`), 'utf8')).connectionSpecification;
          const definitionId = await registerDefinition(c.file, spec);
          const token = await widgetToken(hostOrigin, `widget-user-${c.file}`);
          const embed = (actor?: string) =>
            `<!doctype html><title>platform</title><div id="coffer-connect"></div>\n` +
            `<script src="${edge.url}/widget/coffer-widget.js"></script>\n` +
            `<script>CofferWidget.mount(document.getElementById('coffer-connect'), { token: ${JSON.stringify(token)}, definitionId: ${JSON.stringify(definitionId)}${actor ? `, actorId: ${JSON.stringify(actor)}` : ''} });</script>`;
          pages.set(`/${c.file}`, embed());

          const context = await browser.newContext();
          const page = await context.newPage();
          page.setDefaultTimeout(30_000);
          let submitted = false;
          page.on('response', async (res) => {
            if (!submitted) return;
            seenAfterSubmit.push(`${res.url()} ${JSON.stringify(await res.allHeaders())} ${await res.text().catch(() => '')}`);
          });
          await page.goto(`${hostOrigin}/${c.file}`);
          await page.waitForSelector('form.coffer-form');
          await page.screenshot({ path: join(outDir, `widget-${c.file}.png`), fullPage: true });

          // Submitting empty shows field-level errors from the browser's own check.
          await page.click('button.coffer-submit');
          expect(await page.locator('.coffer-invalid').count()).toBeGreaterThan(0);

          if (c.file === 'source-hubspot') {
            await page.selectOption('select[data-oneof="$.credentials"]', { label: 'Private App' });
            await page.fill('input[name="$.credentials.access_token"]', c.canary);
            expect(await page.getAttribute('input[name="$.credentials.access_token"]', 'type')).toBe('password');
          } else if (c.file === 'source-github') {
            await page.selectOption('select[data-oneof="$.credentials"]', { label: 'Personal Access Token' });
            await page.fill('input[name="$.credentials.personal_access_token"]', c.canary);
            // minItems 1: the first row is there already; a second one is added and filled.
            await page.fill('input[name="$.repositories[0]"]', 'airbytehq/airbyte');
            await page.click('fieldset[data-path="$.repositories"] > button.coffer-add');
            await page.fill('input[name="$.repositories[1]"]', 'airbytehq/airbyte-platform');
          } else {
            await page.fill('input[name="$.api_key"]', c.canary);
            expect(await page.locator('select[name="$.processing_mode"]').count()).toBe(1);
          }
          submitted = true;
          // Page code as text: this file is compiled for Node, without the DOM's types.
          await page.evaluate("window.__saved = new Promise((resolve) => document.getElementById('coffer-connect').addEventListener('coffer:saved', (e) => resolve(e.detail), { once: true })); true");
          await page.click('button.coffer-submit');
          await page.waitForFunction("document.querySelector('.coffer-summary') || ['Not saved.', 'Please correct the marked fields.'].includes(document.querySelector('.coffer-status').textContent)", undefined, { timeout: 60_000 });
          const formError = await page.textContent('.coffer-form-error');
          const fieldErrors = await page.locator('.coffer-invalid').allTextContents();
          expect(`${formError} ${fieldErrors.join(' | ')}`.trim(), c.file).toBe('');
          const { actorId } = (await page.evaluate('window.__saved')) as { actorId: string };
          await page.waitForSelector('.coffer-summary');
          expect(await page.textContent('.coffer-summary')).toContain('**********');
          expect(await page.content()).not.toContain(c.canary);

          // Stored with the secret split out: config holds a coordinate, secrets the value.
          const client = createPromiseClient(configV1.ConfigServiceClient, stack.services.config.address, { tokenProvider: operatorConfig });
          try {
            const actor = (await client.getActor({ actorId })).actor!;
            expect(actor.configJson).toContain('**********');
            expect(actor.configJson).not.toContain(c.canary);
          } finally {
            client.close();
          }
          const pgClient = new pg.Client({ connectionString: db.url });
          await pgClient.connect();
          try {
            const { rows } = await pgClient.query<{ r: string }>('select row_to_json(a)::text as r from config.actors a');
            const stored = rows.map((row) => row.r).find((r) => r.includes(actorId));
            expect(stored).toMatch(/"_secret":\s*"coffer_workspace_[0-9a-f-]+_secret_[0-9a-f-]+_v1"/);
          } finally {
            await pgClient.end();
          }

          // Reloading shows the mask, never the value; the secret input stays empty.
          pages.set(`/${c.file}`, embed(actorId));
          await page.reload();
          await page.waitForSelector('.coffer-summary');
          expect(await page.textContent('.coffer-summary')).toContain('**********');
          const secretInputs = page.locator('input[type="password"]');
          for (let i = 0; i < (await secretInputs.count()); i++) expect(await secretInputs.nth(i).inputValue()).toBe('');

          const storage = await page.evaluate('JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage }, cookie: document.cookie })');
          expect(storage).toBe(JSON.stringify({ local: {}, session: {}, cookie: '' }));
          expect(await context.cookies()).toEqual([]);
          await context.close();
        }
      } finally {
        await browser.close();
      }

      const dump = (await promisify(execFile)('pg_dump', ['--data-only', db.url], { maxBuffer: 256 * 1024 * 1024 })).stdout;
      const logs = `${stack.output()}\n${edge.output.join('\n')}`;
      for (const c of cases) {
        expect(dump.includes(c.canary), `${c.file}: Postgres dump`).toBe(false);
        expect(natsSeen.some((m) => m.includes(c.canary)), `${c.file}: NATS`).toBe(false);
        expect(logs.includes(c.canary), `${c.file}: logs`).toBe(false);
        expect(seenAfterSubmit.some((r) => r.includes(c.canary)), `${c.file}: responses`).toBe(false);
      }
      expect(natsSeen.length).toBeGreaterThan(0);
      expect(seenAfterSubmit.length).toBeGreaterThan(0);
    }, 300_000);
  });

  if (!chromium) console.warn('edge: the connect widget browser test is skipped: no Chromium at /usr/bin/chromium (apt-get install chromium, or set CHROMIUM_PATH)');
});
