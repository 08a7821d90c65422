import { describe, expect, it } from 'vitest';
import { loadSyncWorkerConfig, syncWorkerConfigSchema } from './config';

const base = { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/coffer' };
const secret = 'sync-worker-client-secret-value';

describe('sync worker configuration', () => {
  it('requires the service identity secret, naming the variable, with no default', () => {
    expect(() => loadSyncWorkerConfig({ ...base })).toThrow(/SYNC_WORKER_CLIENT_SECRET: required/);
    expect(() => loadSyncWorkerConfig({ DATABASE_URL: 'nope' })).toThrow(/DATABASE_URL[\s\S]*SYNC_WORKER_CLIENT_SECRET/);
  });

  it('defaults everything else to the local stack', () => {
    const c = loadSyncWorkerConfig({ ...base, SYNC_WORKER_CLIENT_SECRET: secret });
    expect(c).toMatchObject({
      SYNC_WORKER_GRPC_ADDRESS: '127.0.0.1:50054',
      SYNC_WORKER_DB_SCHEMA: 'sync',
      CONFIG_ADDRESS: '127.0.0.1:50052',
      SECRETS_ADDRESS: '127.0.0.1:50053',
      AUTH_ADDRESS: '127.0.0.1:50051',
      SYNC_WORKER_CLIENT_ID: 'sync-worker',
      SYNC_WORKER_MAX_DELIVER: 5,
      SYNC_WORKER_EGRESS_ALLOW: [],
    });
  });

  it('parses the egress allow-list, and lists every bad entry under its variable', () => {
    const c = loadSyncWorkerConfig({ ...base, SYNC_WORKER_CLIENT_SECRET: secret, SYNC_WORKER_EGRESS_ALLOW: '127.0.0.0/8, db.internal:5432,[::1]' });
    expect(c.SYNC_WORKER_EGRESS_ALLOW).toEqual(['127.0.0.0/8', 'db.internal:5432', '::1']);
    expect(() => loadSyncWorkerConfig({ ...base, SYNC_WORKER_CLIENT_SECRET: secret, SYNC_WORKER_EGRESS_ALLOW: '10.0.0.0/40,not a host' })).toThrow(
      /SYNC_WORKER_EGRESS_ALLOW[\s\S]*10\.0\.0\.0\/40[\s\S]*not a host/,
    );
  });

  it('never prints the client secret in its error', () => {
    expect(() => loadSyncWorkerConfig({ ...base, SYNC_WORKER_CLIENT_SECRET: 'short-secret', SYNC_WORKER_MAX_DELIVER: 'x' })).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining('short-secret') }),
    );
  });

  it('accepts no KMS setting: only the secrets service touches the KMS', () => {
    expect(Object.keys(syncWorkerConfigSchema.shape).filter((k) => /KMS|KEYRING|KEK/.test(k))).toEqual([]);
    const c = loadSyncWorkerConfig({ ...base, SYNC_WORKER_CLIENT_SECRET: secret, SECRETS_KMS_PROVIDER: 'local', SECRETS_LOCAL_KEYRING_FILE: '/k.json' });
    expect(Object.keys(c).filter((k) => k.startsWith('SECRETS_KMS') || k.includes('KEYRING'))).toEqual([]);
  });
});

describe('SYNC_WORKER_AIRBYTE_COMMANDS', () => {
  it('maps names to an absolute executable and its fixed arguments, listing every bad entry', async () => {
    const { parseAirbyteCommands } = await import('./config');
    expect(parseAirbyteCommands('')).toEqual({ commands: {}, errors: [] });
    expect(parseAirbyteCommands('{"src":"/opt/src","dst":["/usr/bin/node","/opt/dst.js"]}')).toEqual({ commands: { src: ['/opt/src'], dst: ['/usr/bin/node', '/opt/dst.js'] }, errors: [] });
    expect(parseAirbyteCommands('{"rel":"bin/src","bad name":"/x","empty":[]}').errors).toEqual([
      'rel: the executable must be an absolute path',
      'bad name: a name is letters, digits, ".", "_" and "-"',
      'empty: must be a path or an array of strings',
    ]);
    expect(parseAirbyteCommands('[1]').errors).toEqual(['must be a JSON object of name to command']);
  });
});
