import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { KeyManagementServiceClient } from '@google-cloud/kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGcpKms } from './gcp-kms';
import { kmsProviderSuite } from './kms-provider-suite';

const require = createRequire(import.meta.url);
// Both packages ship their .proto files under build/protos, next to build/src where their main module lives.
const protosOf = (pkg: string) => join(dirname(require.resolve(pkg)), '..', 'protos');
const kmsProtos = protosOf('@google-cloud/kms');
const gaxProtos = protosOf('google-gax');

/**
 * A google.cloud.kms.v1.KeyManagementService on 127.0.0.1 built from the protos the client ships,
 * with real AES-256-GCM per CryptoKeyVersion: the real client library talks gRPC to it.
 */
function localCloudKms() {
  const definition = protoLoader.loadSync(join(kmsProtos, 'google/cloud/kms/v1/service.proto'), {
    includeDirs: [kmsProtos, gaxProtos],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const loaded = grpc.loadPackageDefinition(definition) as any;
  const keys = new Map<string, { primary: number; versions: Map<number, { material: Buffer; state: string }> }>();
  const requests: { method: string; aad?: Buffer }[] = [];
  const newVersion = (key: { versions: Map<number, { material: Buffer; state: string }> }) => {
    const n = key.versions.size + 1;
    key.versions.set(n, { material: randomBytes(32), state: 'ENABLED' });
    return n;
  };
  const ensure = (name: string) => {
    let key = keys.get(name);
    if (!key) {
      key = { primary: 1, versions: new Map() };
      newVersion(key);
      keys.set(name, key);
    }
    return key;
  };
  const versionMsg = (keyName: string, n: number, state: string) => ({ name: `${keyName}/cryptoKeyVersions/${n}`, state });
  const err = (code: grpc.status, details: string) => Object.assign(new Error(details), { code, details });
  const unary = (fn: (req: any) => unknown) => (call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) => {
    try {
      cb(null, fn(call.request));
    } catch (e) {
      cb(e as grpc.ServiceError);
    }
  };
  const service = {
    getCryptoKey: unary((req) => {
      const key = ensure(req.name);
      return { name: req.name, primary: versionMsg(req.name, key.primary, 'ENABLED'), purpose: 'ENCRYPT_DECRYPT' };
    }),
    listCryptoKeyVersions: unary((req) => {
      const key = ensure(req.parent);
      return { cryptoKeyVersions: [...key.versions].map(([n, v]) => versionMsg(req.parent, n, v.state)), totalSize: key.versions.size };
    }),
    createCryptoKeyVersion: unary((req) => {
      const n = newVersion(ensure(req.parent));
      return versionMsg(req.parent, n, 'ENABLED');
    }),
    updateCryptoKeyPrimaryVersion: unary((req) => {
      const key = ensure(req.name);
      key.primary = Number(req.cryptoKeyVersionId);
      return { name: req.name, primary: versionMsg(req.name, key.primary, 'ENABLED') };
    }),
    destroyCryptoKeyVersion: unary((req) => {
      const [keyName, n] = String(req.name).split('/cryptoKeyVersions/') as [string, string];
      const v = ensure(keyName).versions.get(Number(n));
      if (!v) throw err(grpc.status.NOT_FOUND, 'no such version');
      v.state = 'DESTROY_SCHEDULED';
      return versionMsg(keyName, Number(n), v.state);
    }),
    encrypt: unary((req) => {
      requests.push({ method: 'encrypt', aad: req.additionalAuthenticatedData });
      const key = ensure(req.name);
      const v = key.versions.get(key.primary)!;
      const iv = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', v.material, iv);
      c.setAAD(req.additionalAuthenticatedData ?? Buffer.alloc(0));
      const body = Buffer.concat([c.update(req.plaintext), c.final()]);
      const prefix = Buffer.alloc(4);
      prefix.writeUInt32BE(key.primary);
      return { name: `${req.name}/cryptoKeyVersions/${key.primary}`, ciphertext: Buffer.concat([prefix, iv, c.getAuthTag(), body]) };
    }),
    decrypt: unary((req) => {
      requests.push({ method: 'decrypt', aad: req.additionalAuthenticatedData });
      const blob: Buffer = req.ciphertext;
      const v = ensure(req.name).versions.get(blob.readUInt32BE(0));
      if (!v || v.state !== 'ENABLED') throw err(grpc.status.FAILED_PRECONDITION, 'version is not enabled');
      try {
        const d = createDecipheriv('aes-256-gcm', v.material, blob.subarray(4, 16));
        d.setAAD(req.additionalAuthenticatedData ?? Buffer.alloc(0));
        d.setAuthTag(blob.subarray(16, 32));
        return { plaintext: Buffer.concat([d.update(blob.subarray(32)), d.final()]) };
      } catch {
        throw err(grpc.status.INVALID_ARGUMENT, 'decryption failed');
      }
    }),
  };
  const server = new grpc.Server();
  server.addService(loaded.google.cloud.kms.v1.KeyManagementService.service, service);
  return { server, requests };
}

describe('gcp-kms provider through the real Cloud KMS client against a local gRPC KeyManagementService', () => {
  const local = localCloudKms();
  let port = 0;
  let n = 0;

  beforeAll(async () => {
    port = await new Promise<number>((resolve, reject) =>
      local.server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
  });

  afterAll(async () => {
    await new Promise<void>((r) => local.server.tryShutdown(() => r()));
  });

  const client = () => new KeyManagementServiceClient({ apiEndpoint: '127.0.0.1', port, sslCreds: grpc.credentials.createInsecure() });
  const make = () => createGcpKms({ client: client(), keyName: `projects/p/locations/global/keyRings/coffer/cryptoKeys/kek-${++n}` });

  kmsProviderSuite('gcp-kms', make);

  it('binds the context as additionalAuthenticatedData and reads its versions back from Cloud KMS', async () => {
    const kms = await make();
    await kms.createVersion();
    const dek = randomBytes(32);
    const wrapped = await kms.wrap(dek, 'ws|coordinate_v9');
    expect(local.requests.filter((r) => r.method === 'encrypt').at(-1)!.aad?.toString()).toBe('ws|coordinate_v9');
    const again = await createGcpKms({ client: client(), keyName: kms.kekId });
    expect(again.primaryVersion()).toBe(2);
    expect(await again.unwrap(wrapped, 'ws|coordinate_v9')).toEqual(dek);
    await again.close();
    await kms.close();
  });
});
