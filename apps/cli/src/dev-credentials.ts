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

/**
 * The files `coffer dev-credentials` writes into `.coffer/` for docker compose: one env file per
 * service that needs a secret (only its own), the local KMS keyring (mounted into `secrets` alone) and
 * the operator's client credentials.
 */
export function devCredentialFiles(creds: DevCredentials): Record<string, string> {
  const identities = (['config', 'sync-worker', 'operator'] as const).map((role) => ({ ...creds.clients[role], role }));
  return {
    'auth.env': `AUTH_SIGNING_KEY=${creds.signingKeyJwk}\nAUTH_SERVICE_IDENTITIES=${JSON.stringify(identities)}\n`,
    'config.env': `CONFIG_CLIENT_ID=config\nCONFIG_CLIENT_SECRET=${creds.clients.config.clientSecret}\n`,
    'sync-worker.env': `SYNC_WORKER_CLIENT_ID=sync-worker\nSYNC_WORKER_CLIENT_SECRET=${creds.clients['sync-worker'].clientSecret}\n`,
    'keyring.json': creds.keyringJson,
    'operator.json': JSON.stringify(creds.clients.operator, null, 2),
  };
}
