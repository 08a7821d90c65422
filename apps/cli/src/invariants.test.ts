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
