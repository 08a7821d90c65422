import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { kmsProviderSuite } from './kms-provider-suite';
import { generateKeyringDocument, loadLocalKms, parseKeyring } from './local-kms';

describe('local KMS provider', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'coffer-local-kms-'));
  afterAll(() => rm(dir, { recursive: true, force: true }));
  let n = 0;
  kmsProviderSuite('local', async () => {
    const file = join(dir, `keyring-${++n}.json`);
    await writeFile(file, generateKeyringDocument('local-test'), { mode: 0o600 });
    return loadLocalKms(file);
  });

  it('writes rotations and retirements back to the keyring file', async () => {
    const file = join(dir, 'persisted.json');
    await writeFile(file, generateKeyringDocument('persisted'));
    const kms = await loadLocalKms(file);
    await kms.createVersion();
    await kms.retireVersion(1);
    const reread = parseKeyring(await readFile(file, 'utf8'));
    expect(reread.primaryVersion).toBe(2);
    expect([...reread.keys.keys()]).toEqual([2]);
    expect(reread.retired).toEqual([1]);
  });
});
