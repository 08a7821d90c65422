import { describe, expect, it } from 'vitest';
import { loadSecretsConfig } from './config';

const base = { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/coffer' };

describe('secrets configuration', () => {
  it('chooses the KMS provider and requires its settings, naming each missing one', () => {
    expect(() => loadSecretsConfig({ ...base, SECRETS_KMS_PROVIDER: 'local' })).toThrow(/SECRETS_LOCAL_KEYRING_FILE: required with SECRETS_KMS_PROVIDER=local/);
    expect(() => loadSecretsConfig({ ...base, SECRETS_KMS_PROVIDER: 'pkcs11' })).toThrow(
      /SECRETS_PKCS11_LIBRARY[\s\S]*SECRETS_PKCS11_TOKEN_LABEL[\s\S]*SECRETS_PKCS11_PIN/,
    );
    expect(() => loadSecretsConfig({ ...base, SECRETS_KMS_PROVIDER: 'aws-kms' })).toThrow(/SECRETS_AWS_REGION/);
    expect(() => loadSecretsConfig({ ...base, SECRETS_KMS_PROVIDER: 'gcp-kms' })).toThrow(/SECRETS_GCP_KMS_KEY_NAME/);
    expect(() => loadSecretsConfig({ ...base, SECRETS_KMS_PROVIDER: 'vault' })).toThrow(/SECRETS_KMS_PROVIDER/);
    const c = loadSecretsConfig({ ...base, SECRETS_KMS_PROVIDER: 'pkcs11', SECRETS_PKCS11_LIBRARY: '/lib.so', SECRETS_PKCS11_TOKEN_LABEL: 't', SECRETS_PKCS11_PIN: '1234' });
    expect(c.SECRETS_KEK_ROTATION_DAYS).toBe(365);
    expect(c.SECRETS_EPHEMERAL_TTL_SECONDS).toBe(7200);
  });

  it('never prints a secret setting in its error', () => {
    const pin = 'pin-value-should-not-print';
    expect(() => loadSecretsConfig({ ...base, SECRETS_KMS_PROVIDER: 'pkcs11', SECRETS_PKCS11_PIN: pin, SECRETS_EPHEMERAL_TTL_SECONDS: 'x' })).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining(pin) }),
    );
  });

  it('requires SECRETS_KMS_PROVIDER outside development, and defaults it to local only with COFFER_ENV=development', () => {
    expect(() => loadSecretsConfig({ ...base, SECRETS_LOCAL_KEYRING_FILE: '/k.json' })).toThrow(/SECRETS_KMS_PROVIDER: required outside development/);
    expect(() => loadSecretsConfig({ ...base, COFFER_ENV: 'production', SECRETS_LOCAL_KEYRING_FILE: '/k.json' })).toThrow(/SECRETS_KMS_PROVIDER: required outside development/);
    expect(loadSecretsConfig({ ...base, COFFER_ENV: 'development', SECRETS_LOCAL_KEYRING_FILE: '/k.json' }).SECRETS_KMS_PROVIDER).toBe('local');
    expect(() => loadSecretsConfig({ ...base, COFFER_ENV: 'development' })).toThrow(/SECRETS_LOCAL_KEYRING_FILE: required with SECRETS_KMS_PROVIDER=local/);
    expect(loadSecretsConfig({ ...base, SECRETS_KMS_PROVIDER: 'local', SECRETS_LOCAL_KEYRING_FILE: '/k.json' }).SECRETS_KMS_PROVIDER).toBe('local');
  });

  it('lists the KMS settings in the same pass as every other bad setting', () => {
    let message = '';
    try {
      loadSecretsConfig({ SECRETS_KMS_PROVIDER: 'pkcs11', SECRETS_EPHEMERAL_TTL_SECONDS: 'soon', COFFER_TLS_CA_FILE: '/ca.pem' });
    } catch (err) {
      message = (err as Error).message;
    }
    for (const setting of ['DATABASE_URL', 'SECRETS_EPHEMERAL_TTL_SECONDS', 'SECRETS_PKCS11_LIBRARY', 'SECRETS_PKCS11_TOKEN_LABEL', 'SECRETS_PKCS11_PIN', 'COFFER_TLS_CERT_FILE', 'COFFER_TLS_KEY_FILE']) {
      expect(message).toContain(`  ${setting}: `);
    }
    expect(message).toMatch(/^invalid secrets service configuration \(7 settings to fix\):/);
  });
});
