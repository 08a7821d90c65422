import { randomBytes, randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair } from 'jose';

/** Fresh credentials for a development stack: a signing key, a KMS keyring and one client secret per identity. */
export interface DevCredentials {
  signingKeyJwk: string;
  keyringJson: string;
  clients: Record<'config' | 'sync-worker' | 'operator', { clientId: string; clientSecret: string }>;
}

const secret = () => randomBytes(24).toString('base64url');

/** Generates development credentials; nothing here is fit for production (the keyring is a file). */
export async function generateDevCredentials(): Promise<DevCredentials> {
  const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: `dev-${randomUUID().slice(0, 8)}` };
  return {
    signingKeyJwk: JSON.stringify(jwk),
    keyringJson: JSON.stringify({ id: 'local-dev', primaryVersion: 1, keys: [{ version: 1, key: randomBytes(32).toString('base64') }] }),
    clients: {
      config: { clientId: 'config', clientSecret: secret() },
      'sync-worker': { clientId: 'sync-worker', clientSecret: secret() },
      operator: { clientId: 'operator', clientSecret: secret() },
    },
  };
}
