// `npm run bench`: Coffer against the raw parts it is made of, measured in the same run, interleaved.
//   node --import tsx bench/src/main.ts [--rounds 3] [--seconds 4] [--profile <scenario id>] [--only <scenario id>,…]
// See the README's "Performance" section for what each row means.
import { execFileSync, spawn } from 'node:child_process';
import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { generateKeyPair, jwtVerify, SignJWT } from 'jose';
import pg from 'pg';
import { startStack, stackServices, type StackProcess } from '@coffer/cli';
import { configV1, eventSubject, secretsV1, streamName, type MessagingNamespace } from '@coffer/contracts';
import { createPromiseClient, createServiceTokenProvider } from '@coffer/rpc';
import { createDatabase, deleteStreams, uniqueId } from '@coffer/testing';
import { createDatabase as createKysely } from '@coffer/runtime';
import { rebuildSecretVersions } from '../../apps/secrets/src/read-model-rebuild';
import type { SecretsDatabase } from '../../apps/secrets/src/secrets.database';
import { topFunctions, topOrigins, type CpuProfile } from './cpu-profile';
import { fillSecretVersions } from './p6';
import { echoService } from './echo-server.mjs';
import { closedLoop, pacedEvents, type Collected } from './load';
import { cpuMsOf, rssOf } from './proc-stat';
import { resultFileName, resultJson, type BenchResult } from './result-file';
import { settle, type Row, type Target } from './rows';
import { median, medianOfRounds, runFigures, type RunFigures } from './stats';
import { formatTable } from './table';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const argv = process.argv.slice(2);
const flag = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const profileScenario = flag('profile');
// Only the groups of these scenarios, no memory or start-up rows, no result file: for checking one change.
const only = flag('only')?.split(',').filter(Boolean);
const ROUNDS = Number(flag('rounds') ?? 3);
const RUN_MS = Number(flag('seconds') ?? (profileScenario ? 20 : 4)) * 1000;
const WORKSPACES = 128;
const EVENTS_PER_SECOND = 100;
const P6_VERSIONS = 1_000_000;
const fmtCount = (n: number | undefined) => (n === undefined ? '–' : n.toLocaleString('en-US'));
const say = (text: string) => process.stdout.write(`${text}\n`);

/** One thing measured: Coffer, a raw baseline, or a reference cost. */
interface Scenario {
  id: string;
  name: string;
  kind: Row['kind'];
  run: (ms: number) => Promise<Collected>;
  baseline?: string;
  ratioOf?: Row['ratioOf'];
  target?: Target;
  note?: string;
}

const started = new Date();
const loadAverageStart = loadavg();
const adminUrl = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const natsUrl = process.env.NATS_URL || 'nats://127.0.0.1:4222';
const id = uniqueId();
const ns: MessagingNamespace = { subjectRoot: `coffer_b${id}`, streamPrefix: `COFFER_B${id.toUpperCase()}` };
const bundleDir = join(root, 'dist', 'bench');
const profileDir = join(bundleDir, 'profiles', id);

say(`Coffer benchmark: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, load average ${loadAverageStart.map((l) => l.toFixed(2)).join(' ')}`);
say('bundling the four services (tools/build-app.mjs) …');
execFileSync(process.execPath, [join(root, 'tools/build-app.mjs'), ...stackServices, '--outdir', bundleDir], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });

const cleanups: (() => Promise<unknown>)[] = [];
let interrupted = false;
process.once('SIGINT', () => {
  interrupted = true;
  say('interrupted: stopping after this run and cleaning up');
});

/** Starts the echo server child; resolves its process and port, and how long it took to listen. */
async function startEcho() {
  const began = performance.now();
  const child = spawn(process.execPath, [join(root, 'bench/src/echo-server.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.setEncoding('utf8').once('data', (line: string) => resolve((JSON.parse(line) as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`echo server exited (${code})`)));
  });
  return { child, port, ms: performance.now() - began };
}

const stopChild = (child: ReturnType<typeof spawn>) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });

async function main(): Promise<void> {
  const db = await createDatabase(adminUrl, 'coffer_bench');
  cleanups.push(() => db.drop());
  cleanups.push(() => deleteStreams(natsUrl, ns));
  const echo = await startEcho();
  cleanups.push(() => stopChild(echo.child));

  say(`starting the stack from ${bundleDir} (database ${db.name}, streams ${ns.streamPrefix}_*) …`);
  const stackStarts: Partial<Record<StackProcess, number[]>> = {};
  let recordStarts = false;
  const stack = await startStack({
    databaseUrl: db.url,
    natsUrl,
    namespace: ns,
    bundleDir,
    nodeArgs: profileScenario ? { secrets: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] } : undefined,
    onProgress: (p) => {
      if (recordStarts && p.phase === 'listening' && p.ms !== undefined) (stackStarts[p.service] ??= []).push(p.ms / 1000);
    },
  });
  cleanups.push(() => stack.stop());

  const tokens = (client: 'config' | 'sync-worker' | 'operator', audience: string) =>
    createServiceTokenProvider({ authAddress: stack.services.auth.address, ...stack.credentials.clients[client], audience });
  const config = createPromiseClient(configV1.ConfigServiceClient, stack.services.config.address, { tokenProvider: tokens('operator', 'config'), deadlineMs: 30_000 });
  const asWorker = createPromiseClient(secretsV1.SecretsServiceClient, stack.services.secrets.address, { tokenProvider: tokens('sync-worker', 'secrets'), deadlineMs: 30_000 });
  const asConfig = createPromiseClient(secretsV1.SecretsServiceClient, stack.services.secrets.address, { tokenProvider: tokens('config', 'secrets'), deadlineMs: 30_000 });
  cleanups.push(async () => [config, asWorker, asConfig].forEach((c) => c.close()));

  say(`fixtures: ${WORKSPACES} workspaces, each with one actor of 3 secrets …`);
  const spec = {
    type: 'object',
    required: ['url'],
    properties: { url: { type: 'string' }, user: { type: 'string', airbyte_secret: true }, password: { type: 'string', airbyte_secret: true }, token: { type: 'string', airbyte_secret: true } },
  };
  const configJson = () => JSON.stringify({ url: 'https://example.test', user: `u-${randomUUID()}`, password: `p-${randomUUID()}`, token: `t-${randomUUID()}` });
  const { definitionId } = (await config.registerConnectorDefinition({ name: 'bench', actorType: configV1.ActorType.ACTOR_TYPE_SOURCE, connector: 'builtin:http-json', specJson: JSON.stringify(spec) })).definition!;
  const workspaces: string[] = [];
  const actors: { workspaceId: string; actorId: string; partial: string }[] = [];
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  cleanups.push(() => admin.end());
  const addActor = async () => {
    const workspaceId = (await config.createWorkspace({ name: `bench ${workspaces.length}`, organizationId: '' })).workspace!.workspaceId;
    workspaces.push(workspaceId);
    const actorId = (await config.createActor({ workspaceId, definitionId, name: 'hydrated', configJson: configJson() })).actor!.actorId;
    const row = await admin.query<{ partial_config: unknown }>('select partial_config from config.actors where actor_id = $1', [actorId]);
    actors.push({ workspaceId, actorId, partial: JSON.stringify(row.rows[0]!.partial_config) });
  };
  let begun = 0;
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (begun++ < WORKSPACES) await addActor();
  }));

  // Raw baselines.
  const EchoClient = grpc.makeGenericClientConstructor(echoService, 'Echo');
  const echoClient = new EchoClient(`127.0.0.1:${echo.port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    echo(req: Buffer, cb: (err: grpc.ServiceError | null, res: Buffer) => void): void;
  };
  cleanups.push(async () => echoClient.close());
  const payload = randomBytes(256);
  const echoOnce = () => new Promise<Buffer>((resolve, reject) => echoClient.echo(payload, (err, res) => (err ? reject(err) : resolve(res))));

  await admin.query('create table public.bench_raw (id bigserial primary key, workspace_id uuid not null, data jsonb not null, recorded_at timestamptz not null default now())');
  const pools = { 1: new pg.Pool({ connectionString: db.url, max: 1 }), 16: new pg.Pool({ connectionString: db.url, max: 16 }) };
  cleanups.push(() => Promise.all(Object.values(pools).map((p) => p.end())));
  const rawRow = JSON.stringify({ ciphertext: randomBytes(96).toString('base64'), wrappedKey: randomBytes(60).toString('base64'), coordinate: `coffer_workspace_${randomUUID()}_secret_${randomUUID()}_v1` });
  const pgInsert = (pool: pg.Pool) => async () => {
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      await c.query('insert into public.bench_raw (workspace_id, data) values ($1, $2)', [randomUUID(), rawRow]);
      await c.query('COMMIT');
    } finally {
      c.release();
    }
  };

  const nc = await connect({ servers: natsUrl });
  cleanups.push(() => nc.close());
  const js = jetstream(nc);
  const rawStream = `${ns.streamPrefix}_BENCH`;
  const rawSubject = `${ns.subjectRoot}.bench.raw`;
  await (await jetstreamManager(nc)).streams.add({ name: rawStream, subjects: [`${ns.subjectRoot}.bench.>`] });

  /** Latency from a send to the plain JetStream subscriber receiving what it caused, matched by a key in the message body. */
  const eventLatency = async (stream: string, subject: string, keyOf: (body: Record<string, unknown>) => unknown, send: (key: string) => Promise<unknown>, ms: number): Promise<Collected> => {
    const sentAt = new Map<string, number>();
    const latencies: number[] = [];
    const consumer = await js.consumers.get(stream, { filter_subjects: subject, deliver_policy: DeliverPolicy.New });
    const messages = await consumer.consume();
    const reading = (async () => {
      for await (const m of messages) {
        const key = String(keyOf(m.json<Record<string, unknown>>()));
        const t0 = sentAt.get(key);
        if (t0 === undefined) continue;
        latencies.push(performance.now() - t0);
        sentAt.delete(key);
      }
    })();
    const paced = await pacedEvents((i) => {
      const key = randomUUID();
      sentAt.set(key, performance.now());
      return send(key).catch((err: unknown) => {
        sentAt.delete(key);
        throw err;
      }).then(() => i);
    }, EVENTS_PER_SECOND, ms, () => sentAt.size);
    const missing = sentAt.size;
    await messages.close();
    await reading;
    return { latencies, elapsedMs: paced.elapsedMs, errors: paced.errors + missing, firstError: paced.firstError ?? (missing ? `${missing} events not received within 5 s` : undefined) };
  };

  const aesKey = randomBytes(32);
  const plaintext = randomBytes(1024);
  const aad = Buffer.from(`coffer_workspace_${randomUUID()}_secret_${randomUUID()}_v1`);
  const sealOpen = async () => {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', aesKey, iv).setAAD(aad);
    const sealed = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    const decipher = createDecipheriv('aes-256-gcm', aesKey, iv).setAAD(aad).setAuthTag(cipher.getAuthTag());
    Buffer.concat([decipher.update(sealed), decipher.final()]);
  };
  const ed = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  const jwt = await new SignJWT({ scope: 'bench' }).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' }).setIssuer('bench').setAudience('bench').setIssuedAt().setExpirationTime('1h').sign(ed.privateKey);
  const verifyJwt = () => jwtVerify(jwt, ed.publicKey, { algorithms: ['EdDSA'], issuer: 'bench', audience: 'bench' });

  const secretValue = () => `bench-value-${randomUUID()}`;
  const actorAt = (i: number) => actors[i % actors.length]!;
  const scenarios: Scenario[] = [
    { id: 'echo-c1', name: 'grpc-js echo, c1', kind: 'baseline', run: (ms) => closedLoop(echoOnce, 1, ms) },
    {
      id: 'hydrate-c1', name: 'HydrateConfig, 3 secrets, c1', kind: 'coffer', baseline: 'echo-c1', ratioOf: 'p99', target: { of: 'ratio', atMost: 2 },
      run: (ms) => closedLoop((i) => asWorker.hydrateConfig({ workspaceId: actorAt(i).workspaceId, ownerId: actorAt(i).actorId, partialConfigJson: actorAt(i).partial, reason: 'bench' }), 1, ms),
    },
    { id: 'echo-c64', name: 'grpc-js echo, c64', kind: 'baseline', run: (ms) => closedLoop(echoOnce, 64, ms) },
    {
      id: 'hydrate-c64', name: 'HydrateConfig, 3 secrets, c64', kind: 'coffer', baseline: 'echo-c64', ratioOf: 'throughput', target: { of: 'ratio', atLeast: 0.6 },
      run: (ms) => closedLoop((i) => asWorker.hydrateConfig({ workspaceId: actorAt(i).workspaceId, ownerId: actorAt(i).actorId, partialConfigJson: actorAt(i).partial, reason: 'bench' }), 64, ms),
    },
    {
      id: 'get-workspace-c64', name: 'GetWorkspace, authenticated, c64', kind: 'coffer', baseline: 'echo-c64', ratioOf: 'throughput', target: { of: 'ratio', atLeast: 0.9 },
      run: (ms) => closedLoop((i) => config.getWorkspace({ workspaceId: workspaces[i % workspaces.length]! }), 64, ms),
    },
    { id: 'pg-c1', name: 'pg BEGIN; INSERT; COMMIT, c1', kind: 'baseline', run: (ms) => closedLoop(pgInsert(pools[1]), 1, ms) },
    { id: 'pg-c16', name: 'pg BEGIN; INSERT; COMMIT, c16', kind: 'baseline', run: (ms) => closedLoop(pgInsert(pools[16]), 16, ms) },
    {
      id: 'write-c1', name: 'WriteSecrets, one value, c1', kind: 'coffer', baseline: 'pg-c1', ratioOf: 'throughput',
      run: (ms) => closedLoop((i) => asConfig.writeSecrets({ workspaceId: workspaces[i % workspaces.length]!, ownerId: randomUUID(), ownerWorkspaceId: '', writeId: '', secrets: [{ baseCoordinate: '', expectedVersion: 0, value: secretValue(), ttlSeconds: 0 }] }), 1, ms),
    },
    {
      id: 'write-c16', name: 'WriteSecrets, one value, c16', kind: 'coffer', baseline: 'pg-c16', ratioOf: 'throughput', target: { of: 'ratio', atLeast: 0.5 },
      run: (ms) => closedLoop((i) => asConfig.writeSecrets({ workspaceId: workspaces[i % workspaces.length]!, ownerId: randomUUID(), ownerWorkspaceId: '', writeId: '', secrets: [{ baseCoordinate: '', expectedVersion: 0, value: secretValue(), ttlSeconds: 0 }] }), 16, ms),
    },
    {
      id: 'create-actor-c16', name: 'CreateActor with 3 secrets, c16', kind: 'coffer', target: { of: 'throughput', atLeast: 1000 },
      run: (ms) => closedLoop((i) => config.createActor({ workspaceId: workspaces[i % workspaces.length]!, definitionId, name: `bench ${i}`, configJson: configJson() }), 16, ms),
    },
    { id: 'js-publish-c1', name: 'JetStream publish with ack, 1 in flight', kind: 'reference', run: (ms) => closedLoop(() => js.publish(rawSubject, payload), 1, ms) },
    { id: 'js-publish-c256', name: 'JetStream publish with ack, 256 in flight', kind: 'reference', run: (ms) => closedLoop(() => js.publish(rawSubject, payload), 256, ms) },
    {
      id: 'raw-event-latency', name: `JetStream publish → consumer, ${EVENTS_PER_SECOND}/s`, kind: 'baseline',
      run: (ms) => eventLatency(rawStream, rawSubject, (b) => b.key, (key) => js.publish(rawSubject, JSON.stringify({ key })), ms),
    },
    {
      id: 'event-latency', name: `WriteSecrets → SecretVersionWritten at a JetStream consumer, ${EVENTS_PER_SECOND}/s`, kind: 'coffer', baseline: 'raw-event-latency', ratioOf: 'p99', target: { of: 'p99', atMost: 50 },
      note: 'from the WriteSecrets call sent to the event received by a plain ordered consumer (the raw row: from publish sent)',
      run: (ms) => eventLatency(streamName(ns, 'secrets'), eventSubject(ns, 'SecretVersionWritten'), (b) => b.workspaceId, (key) => asConfig.writeSecrets({ workspaceId: key, ownerId: randomUUID(), ownerWorkspaceId: '', writeId: '', secrets: [{ baseCoordinate: '', expectedVersion: 0, value: secretValue(), ttlSeconds: 0 }] }), ms),
    },
    { id: 'aes-gcm-1k', name: 'AES-256-GCM seal + open, 1 KiB (node:crypto)', kind: 'reference', run: (ms) => closedLoop(sealOpen, 1, Math.min(ms, 1_000)) },
    { id: 'jose-eddsa-verify', name: 'jose EdDSA JWT verify', kind: 'reference', run: (ms) => closedLoop(verifyJwt, 1, Math.min(ms, 1_000)) },
  ];
  // Run together, in turn, each round (the order flips every round).
  const groups = [
    ['echo-c1', 'hydrate-c1'],
    ['echo-c64', 'hydrate-c64', 'get-workspace-c64'],
    ['pg-c1', 'write-c1', 'pg-c16', 'write-c16'],
    ['create-actor-c16'],
    ['js-publish-c1', 'js-publish-c256'],
    ['raw-event-latency', 'event-latency'],
    ['aes-gcm-1k', 'jose-eddsa-verify'],
  ];
  const byId = new Map(scenarios.map((s) => [s.id, s]));

  /** CPU ms used so far by each process: the services, the echo server, this process, and the Postgres backends of the bench database. */
  const cpuNow = async () => {
    const backends = await admin.query<{ pid: number }>('select pid from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [db.name]);
    const usage = process.cpuUsage();
    return {
      named: {
        ...Object.fromEntries(stackServices.map((s) => [s, cpuMsOf(stack.services[s].process.pid!)])),
        echo: cpuMsOf(echo.child.pid!),
        bench: (usage.user + usage.system) / 1000,
      } as Record<string, number>,
      postgres: new Map(backends.rows.map((r) => [r.pid, cpuMsOf(r.pid)])),
    };
  };
  const measure = async (s: Scenario, ms: number): Promise<RunFigures> => {
    const before = await cpuNow();
    const collected = await s.run(ms);
    const after = await cpuNow();
    const cpu: Record<string, number> = Object.fromEntries(Object.entries(after.named).map(([k, v]) => [k, v - (before.named[k] ?? 0)]));
    cpu.postgres = [...after.postgres].reduce((sum, [pid, ms2]) => sum + ms2 - (before.postgres.get(pid) ?? 0), 0);
    if (collected.errors) say(`  ${s.id}: ${collected.errors} failed (${collected.firstError})`);
    return runFigures(collected.latencies, collected.elapsedMs, cpu, collected.errors);
  };

  if (profileScenario) {
    const s = byId.get(profileScenario);
    if (!s) throw new Error(`--profile: no scenario ${profileScenario} (one of ${[...byId.keys()].join(', ')})`);
    say(`profiling secrets during ${s.name} for ${RUN_MS / 1000} s …`);
    await measure(s, 2_000);
    // What the bench database's backends are doing, sampled every 25 ms while the profiled run lasts.
    const waits = new Map<string, number>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const { rows } = await admin.query<{ w: string }>(
          `select coalesce(wait_event_type || ':' || wait_event, state) as w from pg_stat_activity where datname = $1 and pid <> pg_backend_pid() and backend_type = 'client backend'`,
          [db.name],
        );
        for (const r of rows) waits.set(r.w, (waits.get(r.w) ?? 0) + 1);
        await sleep(25);
      }
    })();
    const f = await measure(s, RUN_MS);
    sampling = false;
    await sampler;
    const samples = [...waits.values()].reduce((a, b) => a + b, 0);
    say('Postgres backends of the bench database, by what they were doing (share of samples):');
    for (const [w, n] of [...waits].sort((a, b) => b[1] - a[1]).slice(0, 8)) say(`  ${((n / samples) * 100).toFixed(1).padStart(5)}%  ${w}`);
    say(`${s.name}: ${f.throughput.toFixed(0)}/s, p99 ${f.p99.toFixed(1)} ms (secrets under --cpu-prof)`);
    await stack.stopOne('secrets');
    const file = readdirSync(profileDir).filter((n) => n.endsWith('.cpuprofile')).map((n) => join(profileDir, n)).sort((a, b) => statSync(b).size - statSync(a).size)[0];
    if (!file) throw new Error(`secrets wrote no profile in ${profileDir}`);
    const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
    say(`\nprofile ${file}\nself time by origin:`);
    for (const o of topOrigins(profile)) say(`  ${pct(o.selfShare).padStart(6)}  ${o.name}`);
    say('self time by function:');
    for (const fn of topFunctions(profile, 25)) say(`  ${pct(fn.selfShare).padStart(6)}  ${fn.name}`);
    return;
  }

  // P6's first half: hydrate p50 while the log holds only the fixtures' versions (about 10³).
  const runP6 = !only || only.includes('p6');
  const versionCount = async () => Number((await admin.query<{ n: string }>('select count(*)::text as n from secrets.secret_versions')).rows[0]!.n);
  // Each half of P6: the c1 hydrates in rounds, the median over them (the halves are minutes apart,
  // and this machine's c1 latency drifts more than an index lookup moves in that time).
  const p6Half = async (): Promise<{ figures: RunFigures }> => {
    const hydrate = byId.get('hydrate-c1')!;
    await measure(hydrate, 1_000);
    const figures: RunFigures[] = [];
    for (let round = 0; round < ROUNDS && !interrupted; round++) figures.push(await measure(hydrate, RUN_MS));
    return { figures: medianOfRounds(figures) };
  };
  let p6Small: { figures: RunFigures; versions: number } | undefined;
  if (runP6) {
    say('P6: HydrateConfig c1 with the fixtures only …');
    p6Small = { versions: await versionCount(), ...(await p6Half()) };
  }

  const rounds = new Map<string, RunFigures[]>();
  say(`warm-up, then ${ROUNDS} rounds of ${RUN_MS / 1000} s per scenario …`);
  for (let round = 0; round <= ROUNDS && !interrupted; round++) {
    for (const group of only ? groups.filter((g) => g.some((sid) => only.includes(sid))) : groups) {
      const order = round % 2 ? [...group].reverse() : group;
      for (const sid of order) {
        if (interrupted) break;
        const figures = await measure(byId.get(sid)!, round === 0 ? 1_000 : RUN_MS);
        if (round > 0) rounds.set(sid, [...(rounds.get(sid) ?? []), figures]);
        say(`  ${round === 0 ? 'warm-up' : `round ${round}`}  ${sid.padEnd(20)} ${figures.throughput.toFixed(0).padStart(7)}/s  p50 ${figures.p50.toFixed(2)}  p99 ${figures.p99.toFixed(2)} ms`);
      }
    }
  }

  // P6's second half: fill the log to 10⁶ secret versions, rebuild the read model from it (timed),
  // and measure the same hydrates again.
  let p6Large: { figures: RunFigures; versions: number; events: number; rebuildSeconds: number; fillSeconds: number } | undefined;
  if (runP6 && p6Small && !interrupted) {
    const key = (await admin.query<{ kek_id: string; kek_version: number }>('select kek_id, kek_version from secrets.data_keys order by created_at desc limit 1')).rows[0]!;
    const count = P6_VERSIONS - (await versionCount());
    say(`P6: appending ${count.toLocaleString('en-US')} secret versions to the log …`);
    let shown = 0;
    const fillSeconds = await fillSecretVersions(admin, {
      schema: 'secrets', prefix: 'coffer', count, kekId: key.kek_id, kekVersion: key.kek_version,
      progress: (done) => {
        if (done - shown >= 250_000) say(`  ${(shown = done).toLocaleString('en-US')}`);
      },
    });
    say(`P6: filled in ${fillSeconds.toFixed(0)} s; rebuilding secret_versions from the log …`);
    const kysely = createKysely<SecretsDatabase>(db.url, { max: 1 });
    try {
      const rebuilt = await rebuildSecretVersions(kysely, 'secrets');
      // Vacuumed as well as analysed: otherwise autovacuum works through the million new rows while
      // the hydrates are measured, and its CPU and I/O are counted against them.
      await admin.query('vacuum (analyze) secrets.secret_versions, secrets.data_keys, secrets.events');
      say(`P6: rebuilt ${rebuilt.versions.toLocaleString('en-US')} versions from ${rebuilt.events.toLocaleString('en-US')} events in ${(rebuilt.ms / 1000).toFixed(1)} s; HydrateConfig c1 again …`);
      p6Large = { versions: await versionCount(), events: rebuilt.events, rebuildSeconds: rebuilt.ms / 1000, fillSeconds, ...(await p6Half()) };
    } finally {
      await kysely.destroy();
    }
  }
  const p6Rows = (): Row[] => [
    { id: 'p6-hydrate-1e3', name: `P6: HydrateConfig c1, ${fmtCount(p6Small?.versions)} stored versions`, kind: 'coffer', measured: Boolean(p6Small), figures: p6Small?.figures },
    {
      id: 'p6-hydrate-1e6', name: `P6: HydrateConfig c1, ${fmtCount(p6Large?.versions)} stored versions`, kind: 'coffer', measured: Boolean(p6Large), figures: p6Large?.figures,
      baseline: 'p6-hydrate-1e3', ratioOf: 'p50', target: { of: 'ratio', atMost: 1.2 },
      note: `p50 ratio to the same hydrates with the fixtures only (medians of ${ROUNDS} rounds each)`,
    },
    {
      id: 'p6-rebuild-1e6', name: `P6: secret_versions rebuilt from ${fmtCount(p6Large?.events)} events`, kind: 'coffer', measured: Boolean(p6Large), value: p6Large?.rebuildSeconds, unit: 's', target: { of: 'value', atMost: 60 },
      note: p6Large ? `the fill (not timed in the row) took ${p6Large.fillSeconds.toFixed(0)} s` : undefined,
    },
  ];
  if (only) {
    const picked = scenarios.filter((s) => rounds.has(s.id)).map((s): Row => ({ id: s.id, name: s.name, kind: s.kind, measured: true, figures: medianOfRounds(rounds.get(s.id)!), baseline: s.baseline, ratioOf: s.ratioOf, target: s.target, note: s.note }));
    if (runP6) picked.push(...p6Rows());
    say(`\n${formatTable(settle(picked))}\n(--only: no result file written)`);
    return;
  }

  say('idle memory (3 samples, 1 s apart, after 3 s idle) …');
  await sleep(3_000);
  const rss: Record<string, number[]> = {};
  for (let i = 0; i < 3; i++) {
    for (const s of stackServices) (rss[s] ??= []).push(rssOf(stack.services[s].process.pid!) / 2 ** 20);
    (rss.echo ??= []).push(rssOf(echo.child.pid!) / 2 ** 20);
    await sleep(1_000);
  }

  say('cold starts (each service restarted 3 times; the echo server started 3 times) …');
  const echoStarts: number[] = [];
  for (let i = 0; i < 3 && !interrupted; i++) {
    const e = await startEcho();
    echoStarts.push(e.ms / 1000);
    await stopChild(e.child);
  }
  recordStarts = true;
  for (let i = 0; i < 3 && !interrupted; i++) for (const s of stackServices) await stack.restart(s);

  const rows: Row[] = scenarios.map((s) => ({
    id: s.id, name: s.name, kind: s.kind, measured: rounds.has(s.id), figures: rounds.has(s.id) ? medianOfRounds(rounds.get(s.id)!) : undefined,
    baseline: s.baseline, ratioOf: s.ratioOf, target: s.target, note: s.note,
  }));
  rows.push({ id: 'rss-echo', name: 'idle RSS, plain node grpc-js echo', kind: 'baseline', measured: true, value: median(rss.echo!), unit: 'MiB' });
  for (const s of stackServices) {
    rows.push({ id: `rss-${s}`, name: `idle RSS, ${s}`, kind: 'coffer', measured: true, value: median(rss[s]!), unit: 'MiB', baseline: 'rss-echo', ratioOf: 'value', target: { of: 'value', atMost: 120 } });
  }
  rows.push({ id: 'start-echo', name: 'start to listening, plain node grpc-js echo', kind: 'baseline', measured: echoStarts.length > 0, value: median(echoStarts), unit: 's' });
  for (const s of stackServices) {
    const starts = stackStarts[s] ?? [];
    rows.push({ id: `start-${s}`, name: `cold start to listening, ${s}`, kind: 'coffer', measured: starts.length > 0, value: median(starts), unit: 's', baseline: 'start-echo', ratioOf: 'value', target: { of: 'value', atMost: 1.5 } });
  }
  if (runP6) rows.push(...p6Rows());
  const settled = settle(rows);

  const result: BenchResult = {
    version: 1,
    startedAt: started.toISOString(),
    durationSeconds: Math.round((Date.now() - started.getTime()) / 1000),
    commit: gitCommit(),
    machine: {
      cpuModel: cpus()[0]?.model ?? 'unknown',
      cpus: cpus().length,
      memoryGiB: +(totalmem() / 2 ** 30).toFixed(1),
      node: process.version,
      platform: `${process.platform} ${process.arch}`,
      loadAverageStart,
      loadAverageEnd: loadavg(),
    },
    method: {
      rounds: ROUNDS,
      secondsPerRun: RUN_MS / 1000,
      warmUp: 'one 1 s run of every scenario, discarded',
      figures: 'median over the rounds of each run\'s throughput, p50, p95, p99 and CPU ms per operation',
      interleaving: 'each group of scenarios runs in turn every round, the order reversed every other round',
      services: 'the esbuild bundles of tools/build-app.mjs (as the image runs them), LOG_LEVEL=info, every setting at its default',
      writes: `spread over ${WORKSPACES} workspaces (SECRETS_WRITE_RATE_PER_WORKSPACE left at its default of 100 versions/s, so the budget allows ${WORKSPACES * 100}/s); the event-latency writes go to a fresh workspace each`,
      cpu: 'utime + stime from /proc/<pid>/stat before and after each run, per process; postgres: the backends of the bench database',
      load: 'the machine is shared: other work runs at the same time (see the load averages), so the figures are noisy',
    },
    rows: settled,
  };
  const dir = join(root, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const name = resultFileName(started, readdirSync(dir).includes(resultFileName(started)));
  writeFileSync(join(dir, name), resultJson(result));
  say(`\n${formatTable(settled)}\n`);
  say(`machine: ${result.machine.cpus} × ${result.machine.cpuModel}, node ${result.machine.node}; load average ${loadAverageStart.map((l) => l.toFixed(2)).join(' ')} at start, ${result.machine.loadAverageEnd.map((l) => l.toFixed(2)).join(' ')} at end`);
  say(`written: bench/results/${name}`);
}

function gitCommit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${head}+changes` : head;
  } catch {
    return 'unknown';
  }
}

let failed = false;
try {
  await main();
} catch (err) {
  failed = true;
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup().catch((err: unknown) => process.stderr.write(`cleanup: ${String(err)}\n`));
}
process.exit(failed ? 1 : 0);
