import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { z } from 'zod';
import { edgeSettingsSchemas, serviceSettingsSchemas } from './config-reference';
import { devCredentialFiles, generateDevCredentials } from './dev-credentials';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const read = (path: string) => readFileSync(join(root, path), 'utf8');

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string; args?: Record<string, string> };
  environment?: Record<string, string | number | boolean>;
  env_file?: string[];
  secrets?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  ports?: string[];
}

const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, ComposeService> };
const dockerfile = read('infra/Dockerfile');
const coffer = Object.entries(compose.services).filter(([, s]) => s.build?.dockerfile === 'infra/Dockerfile');
const kmsSetting = /KMS|KEYRING|PKCS11/;
/** Every process the image runs: the four services and the HTTP edge, each with the schema its main.ts parses. */
const allSettingsSchemas = { ...serviceSettingsSchemas, ...edgeSettingsSchemas };

/** KEY=VALUE lines, as compose reads an env_file (values taken to the end of the line). */
function dotenv(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split('\n')
      .filter((l) => l.trim() && !l.startsWith('#'))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

describe('docker-compose.yml: each service gets the settings its own schema accepts', () => {
  let envFiles: Record<string, string>;

  beforeAll(async () => {
    // The env files `npm run dev:credentials` writes, from fresh credentials.
    envFiles = devCredentialFiles(await generateDevCredentials());
  });

  /** A service's environment as compose would give it: `environment` plus its env files. */
  const environmentOf = (svc: ComposeService): Record<string, string> => ({
    ...Object.fromEntries(Object.entries(svc.environment ?? {}).map(([k, v]) => [k, String(v)])),
    ...Object.assign({}, ...(svc.env_file ?? []).map((f) => dotenv(envFiles[f.replace(/^\.coffer\//, '')] ?? ''))),
  });

  it('runs the four services and the edge from infra/Dockerfile, one APP each', () => {
    expect(coffer.map(([name, s]) => [name, s.build?.args?.APP]).sort()).toEqual(Object.keys(allSettingsSchemas).map((n) => [n, n]).sort());
  });

  for (const name of Object.keys(allSettingsSchemas) as Array<keyof typeof allSettingsSchemas>) {
    it(`${name}: its environment parses with its settings schema, and holds no setting the schema does not know`, () => {
      const svc = compose.services[name]!;
      for (const file of svc.env_file ?? []) expect(Object.keys(envFiles), `${name} env_file ${file}`).toContain(file.replace(/^\.coffer\//, ''));
      const env = environmentOf(svc);
      const schema = allSettingsSchemas[name];
      const parsed = schema.safeParse(env);
      expect(parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`), name).toEqual([]);
      const known = Object.keys(schema.shape as Record<string, z.ZodType>);
      expect(Object.keys(env).filter((k) => !known.includes(k)), `${name}: settings it would ignore`).toEqual([]);
    });
  }

  it('gives KMS settings and the keyring to secrets alone', () => {
    const withKms = Object.entries(compose.services)
      .filter(([, s]) => Object.keys(environmentOf(s)).some((k) => kmsSetting.test(k)) || (s.secrets ?? []).length > 0)
      .map(([name]) => name);
    expect(withKms).toEqual(['secrets']);
    expect(environmentOf(compose.services.secrets!)).toMatchObject({ SECRETS_KMS_PROVIDER: 'local', COFFER_ENV: 'development' });
  });

  it('starts each service once what it depends on is healthy, NATS included', () => {
    const hasHealthcheck = (name: string) => {
      const svc = compose.services[name]!;
      return Boolean(svc.healthcheck) || (svc.build?.dockerfile === 'infra/Dockerfile' && /^HEALTHCHECK /m.test(dockerfile));
    };
    for (const [name, svc] of coffer) {
      const deps = Object.entries(svc.depends_on ?? {});
      // The edge has no database and no NATS: it waits for the two services it forwards to.
      if (name === 'edge') expect(deps.map(([dep]) => dep).sort(), name).toEqual(['auth', 'config']);
      else expect(deps.map(([dep]) => dep), name).toEqual(expect.arrayContaining(['postgres', 'nats']));
      for (const [dep, { condition }] of deps) {
        expect(condition, `${name} → ${dep}`).toBe('service_healthy');
        expect(hasHealthcheck(dep), `${dep} has a healthcheck`).toBe(true);
      }
    }
    expect(compose.services.nats!.healthcheck!.test.join(' ')).toMatch(/8222\/healthz/);
  });

  it('publishes only auth, config and the edge, which clients call, on the host’s loopback, at the port each binds', () => {
    const published = Object.entries(compose.services).filter(([, s]) => (s.ports ?? []).length > 0);
    expect(published.map(([n]) => n).sort()).toEqual(['auth', 'config', 'edge']);
    for (const [name, svc] of published) {
      const bind = environmentOf(svc)[name === 'edge' ? 'EDGE_HTTP_ADDRESS' : `${name.toUpperCase()}_GRPC_ADDRESS`]!;
      expect(svc.ports).toEqual([`127.0.0.1:${bind.split(':')[1]}:${bind.split(':')[1]}`]);
    }
  });

  it('names in its comments only npm scripts that exist', () => {
    const scripts = Object.keys((JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts);
    const named = [...read('docker-compose.yml').matchAll(/npm run ([\w:-]+)/g)].map((m) => m[1]!);
    expect(named.length).toBeGreaterThan(0);
    for (const script of named) expect(scripts, `npm run ${script}`).toContain(script);
  });
});

/** The paths of the build context, as `docker build` would send it after applying .dockerignore. */
function buildContext(): { files: string[]; bytes: number } {
  const patterns = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  expect(patterns.some((p) => p.startsWith('!')), 'exceptions are not modelled here').toBe(false);
  const toRegex = (p: string) =>
    p
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*\*\//g, '§')
      .replace(/\*/g, '[^/]*')
      .replace(/\?/g, '[^/]')
      .replace(/§/g, '(?:.*/)?');
  const regexes = patterns.map((p) => new RegExp(`^${toRegex(p)}$`));
  const ignored = (path: string) => regexes.some((r) => r.test(path));
  const files: string[] = [];
  let bytes = 0;
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const full = join(dir, name);
      const path = relative(root, full);
      if (ignored(path)) continue;
      const st = statSync(full);
      if (st.isDirectory()) walk(full);
      else {
        files.push(path);
        bytes += st.size;
      }
    }
  };
  walk(root);
  return { files, bytes };
}

describe('the Docker build context and infra/Dockerfile', () => {
  it('sends no dependencies, git history, credentials or local state, and everything the Dockerfile copies', () => {
    const { files, bytes } = buildContext();
    console.log(`build context: ${files.length} files, ${(bytes / 1024 / 1024).toFixed(2)} MB`);
    expect(files.filter((f) => /(^|\/)(node_modules|\.git|\.coffer|dist|\.nx)(\/|$)/.test(f))).toEqual([]);
    expect(files.filter((f) => /\.(pem|key|crt|p12)$|(^|\/)\.env/.test(f))).toEqual([]);
    for (const [, source] of dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
      for (const path of source!.split(' ')) {
        expect(files.some((f) => f === path || f.startsWith(`${path}/`)), `COPY ${path} is in the build context`).toBe(true);
      }
    }
  });

  it('builds all five bundles in one command that fails when any does, and runs as an unprivileged user with a gRPC HEALTHCHECK', () => {
    expect(dockerfile).toMatch(/node tools\/build-app\.mjs auth secrets config sync-worker edge/);
    expect(dockerfile).toMatch(/apt-get install[^\n]*python3 make g\+\+/);
    expect(dockerfile).toMatch(/^RUN npm ci --omit=dev --omit=optional /m);
    const final = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    expect(final).toMatch(/^USER node$/m);
    expect(final).not.toMatch(/^USER root$/m);
    expect(final).toMatch(/^HEALTHCHECK .*CMD \["node", "healthcheck\.mjs"\]$/m);
    expect(final).toMatch(/^COPY infra\/healthcheck\.mjs healthcheck\.mjs$/m);
    // A shell loop hides every failure but the last: each iteration must fail the RUN on its own.
    for (const [loop] of dockerfile.matchAll(/for [^;]+;[^\n]*done/g)) expect(loop).toMatch(/\|\| exit 1/);
  });
});
