import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (name === 'node_modules' || name === 'gen') return [];
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

describe('invariant 1: only the secrets service touches the KMS', () => {
  it('keeps KMS code in apps/secrets only', () => {
    const offenders = [...filesUnder(join(root, 'apps')), ...filesUnder(join(root, 'libs'))]
      .filter((f) => f.endsWith('.ts') && !f.startsWith(join(root, 'apps/secrets/')) && !f.endsWith('invariants.test.ts'))
      .filter((f) => /@aws-sdk\/client-kms|@google-cloud\/kms|pkcs11js|graphene-pk11|from ['"][^'"]*\/kms\//.test(readFileSync(f, 'utf8')));
    expect(offenders).toEqual([]);
  });

  it('accepts KMS settings in no other app config schema', () => {
    for (const app of ['auth', 'config', 'sync-worker']) {
      const path = join(root, 'apps', app, 'src/config.ts');
      expect(readFileSync(path, 'utf8'), path).not.toMatch(/KMS|KEYRING/);
    }
    expect(readFileSync(join(root, 'apps/secrets/src/config.ts'), 'utf8')).toMatch(/SECRETS_KMS_PROVIDER/);
  });

  it('gives KMS settings to the secrets service alone in docker-compose.yml', () => {
    const compose = parse(readFileSync(join(root, 'docker-compose.yml'), 'utf8')) as { services: Record<string, unknown> };
    const withKms = Object.entries(compose.services)
      .filter(([, svc]) => /KMS|KEYRING|keyring/i.test(JSON.stringify(svc)))
      .map(([name]) => name);
    expect(withKms).toEqual(['secrets']);
  });
});

describe('every gRPC method declares its permission, and the README says which', async () => {
  const { authGrpcService } = await import('../../auth/src/auth.grpc');
  const { configGrpcService } = await import('../../config/src/config.grpc');
  const { secretsGrpcService } = await import('../../secrets/src/secrets.grpc');
  const { syncGrpcService } = await import('../../sync-worker/src/sync.grpc');
  const { rolePermissions } = await import('@coffer/tokens');
  // The handlers are never called here: only the declared permissions are read.
  const registrations = [
    ['auth', authGrpcService({} as never, {} as never)],
    ['secrets', secretsGrpcService({} as never)],
    ['config', configGrpcService({} as never)],
    ['sync-worker', syncGrpcService({} as never, 'sync')],
  ] as const;
  const inCode = new Map<string, string>();
  const kindsInCode = new Map<string, string>();
  for (const [service, reg] of registrations) {
    for (const [key, spec] of Object.entries(reg.methods)) {
      const method = `${service} ${reg.name.split('.').pop()}/${key[0]!.toUpperCase()}${key.slice(1)}`;
      inCode.set(method, spec.permission);
      kindsInCode.set(method, spec.permission === 'public' ? '—' : spec.tokenKinds ? spec.tokenKinds.join(', ') : 'any it accepts');
    }
  }
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Who may call what'));
  const rows = [...section.matchAll(/^\| ([a-z-]+) \| `([A-Za-z]+\/[A-Za-z]+)` \| `([a-z._]+)` \| ([^|]+) \| ([^|]+) \|$/gm)];
  const inReadme = new Map(rows.map((r) => [`${r[1]} ${r[2]}`, { permission: r[3]!, grantedTo: r[4]!.trim(), kinds: r[5]!.trim() }]));

  it('lists every method of every service with the permission the code declares', () => {
    expect(inCode.size).toBeGreaterThan(40);
    for (const [method, permission] of inCode) {
      expect(inReadme.get(method)?.permission, `README.md is missing or wrong about ${method}`).toBe(permission);
    }
    for (const method of inReadme.keys()) expect(inCode.has(method), `README.md lists ${method}, which no service has`).toBe(true);
  });

  it('names the kinds of token each method takes', () => {
    for (const [method, { kinds }] of inReadme) expect(kinds, method).toBe(kindsInCode.get(method));
  });

  it('names the roles that hold each permission', () => {
    for (const [method, { permission, grantedTo }] of inReadme) {
      const roles = permission === 'public' ? 'anyone' : Object.entries(rolePermissions).filter(([, ps]) => (ps as readonly string[]).includes(permission)).map(([r]) => r).join(', ');
      expect(grantedTo, method).toBe(roles);
    }
  });
});
