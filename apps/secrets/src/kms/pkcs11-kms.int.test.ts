import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KeyManagementService } from './kms';
import { kmsProviderSuite } from './kms-provider-suite';
import { createPkcs11Kms } from './pkcs11-kms';

const library = process.env.COFFER_PKCS11_LIBRARY ?? '/usr/lib/softhsm/libsofthsm2.so';
const present = existsSync(library) && existsSync('/usr/bin/softhsm2-util');
if (!present) console.warn(`SoftHSM2 not found (${library}); .ci/run installs the Debian package softhsm2. Skipping the PKCS#11 provider tests.`);

const tokenLabel = 'coffer-test';
const pin = '87654321';

describe.skipIf(!present)('pkcs11 KMS provider against a real SoftHSM2 token', () => {
  let dir = '';
  const opened: KeyManagementService[] = [];
  let n = 0;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coffer-softhsm-'));
    const conf = join(dir, 'softhsm2.conf');
    await writeFile(conf, `directories.tokendir = ${dir}\nobjectstore.backend = file\nlog.level = ERROR\n`);
    process.env.SOFTHSM2_CONF = conf;
    execFileSync('softhsm2-util', ['--init-token', '--free', '--label', tokenLabel, '--so-pin', '12345678', '--pin', pin], {
      env: { ...process.env, SOFTHSM2_CONF: conf },
      stdio: 'ignore',
    });
  });

  afterAll(async () => {
    for (const kms of opened) await kms.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const make = async () => {
    const kms = createPkcs11Kms({ library, tokenLabel, pin, kekLabel: `kek-${++n}` });
    opened.push(kms);
    return kms;
  };

  kmsProviderSuite('pkcs11', make);

  it('keeps the KEK inside the token: sensitive, not extractable, its value unreadable', async () => {
    const kms = await make();
    const pkcs11 = new pkcs11js.PKCS11();
    pkcs11.load(library);
    // The module is initialised already in this process by the provider.
    try {
      pkcs11.C_Initialize();
    } catch {
      // CKR_CRYPTOKI_ALREADY_INITIALIZED
    }
    const slot = pkcs11.C_GetSlotList(true).find((s) => pkcs11.C_GetTokenInfo(s).label.trim() === tokenLabel)!;
    const session = pkcs11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      pkcs11.C_FindObjectsInit(session, [{ type: pkcs11js.CKA_LABEL, value: `kek-${n}-v${kms.primaryVersion()}` }]);
      const key = pkcs11.C_FindObjects(session);
      pkcs11.C_FindObjectsFinal(session);
      expect(key).toBeTruthy();
      const attrs = pkcs11.C_GetAttributeValue(session, key!, [{ type: pkcs11js.CKA_SENSITIVE }, { type: pkcs11js.CKA_EXTRACTABLE }]);
      expect(attrs.map((a) => Buffer.from(a.value as Buffer)[0])).toEqual([1, 0]);
      expect(() => pkcs11.C_GetAttributeValue(session, key!, [{ type: pkcs11js.CKA_VALUE }])).toThrow(/CKR_ATTRIBUTE_SENSITIVE/);
    } finally {
      pkcs11.C_CloseSession(session);
    }
  });

  it('refuses an unknown token, and a wrong PIN in a process that has not logged in', async () => {
    expect(() => createPkcs11Kms({ library, tokenLabel: 'no-such-token', pin })).toThrow(/no PKCS#11 token labelled no-such-token/);
    // PKCS#11 login state is per process and token: a wrong PIN is only visible to a fresh process.
    const script = join(dir, 'wrong-pin.ts');
    await writeFile(
      script,
      `import { createPkcs11Kms } from ${JSON.stringify(join(import.meta.dirname, 'pkcs11-kms.ts'))};
try { createPkcs11Kms({ library: ${JSON.stringify(library)}, tokenLabel: ${JSON.stringify(tokenLabel)}, pin: '00000000' }); console.log('opened'); }
catch (err) { console.log(String(err.message)); }`,
    );
    const out = execFileSync(process.execPath, ['--import', 'tsx', script], { env: { ...process.env }, encoding: 'utf8' });
    expect(out).toContain('PKCS#11 login failed (CKR_PIN_INCORRECT)');
    expect(out).not.toContain('00000000');
  });
});
