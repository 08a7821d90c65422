import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KMSClient } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAwsKms } from './aws-kms';
import { kmsProviderSuite } from './kms-provider-suite';

/**
 * A KMS endpoint on 127.0.0.1 speaking the AWS JSON 1.1 protocol (X-Amz-Target: TrentService.*),
 * with real AES-256-GCM under keys it holds: the real SDK serialises, signs and parses against it.
 */
function localKmsEndpoint() {
  const keys = new Map<string, { material: Buffer; state: string }>();
  const aliases = new Map<string, string>();
  const requests: { target: string; body: string }[] = [];
  const aad = (ctx: Record<string, string> | undefined) => Buffer.from(JSON.stringify(Object.entries(ctx ?? {}).sort()), 'utf8');
  const fail = (type: string, message: string) => ({ status: 400, body: { __type: type, message } });
  const handle = (target: string, req: Record<string, any>): { status: number; body: unknown } => {
    switch (target) {
      case 'CreateKey': {
        const keyId = randomUUID();
        keys.set(keyId, { material: randomBytes(32), state: 'Enabled' });
        return { status: 200, body: { KeyMetadata: { KeyId: keyId, Arn: `arn:aws:kms:us-east-1:000000000000:key/${keyId}`, KeyState: 'Enabled' } } };
      }
      case 'CreateAlias':
        if (aliases.has(req.AliasName)) return fail('AlreadyExistsException', 'alias exists');
        aliases.set(req.AliasName, req.TargetKeyId);
        return { status: 200, body: {} };
      case 'ListAliases':
        return { status: 200, body: { Aliases: [...aliases].map(([AliasName, TargetKeyId]) => ({ AliasName, TargetKeyId })), Truncated: false } };
      case 'DescribeKey': {
        const k = keys.get(req.KeyId);
        return k ? { status: 200, body: { KeyMetadata: { KeyId: req.KeyId, KeyState: k.state } } } : fail('NotFoundException', 'no key');
      }
      case 'ScheduleKeyDeletion': {
        const k = keys.get(req.KeyId);
        if (!k) return fail('NotFoundException', 'no key');
        k.state = 'PendingDeletion';
        return { status: 200, body: { KeyId: req.KeyId, KeyState: 'PendingDeletion' } };
      }
      case 'Encrypt': {
        const k = keys.get(req.KeyId);
        if (!k) return fail('NotFoundException', 'no key');
        if (k.state !== 'Enabled') return fail('KMSInvalidStateException', 'key is pending deletion');
        const iv = randomBytes(12);
        const c = createCipheriv('aes-256-gcm', k.material, iv);
        c.setAAD(aad(req.EncryptionContext));
        const body = Buffer.concat([c.update(Buffer.from(req.Plaintext, 'base64')), c.final()]);
        return { status: 200, body: { KeyId: req.KeyId, CiphertextBlob: Buffer.concat([iv, c.getAuthTag(), body]).toString('base64') } };
      }
      case 'Decrypt': {
        const k = keys.get(req.KeyId);
        if (!k) return fail('NotFoundException', 'no key');
        if (k.state !== 'Enabled') return fail('KMSInvalidStateException', 'key is pending deletion');
        const blob = Buffer.from(req.CiphertextBlob, 'base64');
        try {
          const d = createDecipheriv('aes-256-gcm', k.material, blob.subarray(0, 12));
          d.setAAD(aad(req.EncryptionContext));
          d.setAuthTag(blob.subarray(12, 28));
          const plain = Buffer.concat([d.update(blob.subarray(28)), d.final()]);
          return { status: 200, body: { KeyId: req.KeyId, Plaintext: plain.toString('base64') } };
        } catch {
          return fail('InvalidCiphertextException', 'invalid ciphertext');
        }
      }
      default:
        return fail('UnsupportedOperationException', target);
    }
  };
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.on('data', (d: Buffer) => (raw += d.toString()));
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '').replace('TrentService.', '');
      requests.push({ target, body: raw });
      const out = req.headers.authorization?.startsWith('AWS4-HMAC-SHA256') ? handle(target, JSON.parse(raw || '{}')) : fail('UnrecognizedClientException', 'unsigned');
      res.writeHead(out.status, { 'content-type': 'application/x-amz-json-1.1' }).end(JSON.stringify(out.body));
    });
  });
  return { server, requests, keys };
}

describe('aws-kms provider through the real AWS SDK against a local KMS endpoint', () => {
  const endpoint = localKmsEndpoint();
  let url = '';
  let n = 0;
  const clients: KMSClient[] = [];

  beforeAll(async () => {
    await new Promise<void>((r) => endpoint.server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(endpoint.server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    for (const c of clients) c.destroy();
    await new Promise<void>((r) => endpoint.server.close(() => r()));
  });

  const make = async () => {
    const client = new KMSClient({ region: 'us-east-1', endpoint: url, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
    clients.push(client);
    return createAwsKms({ client, kekId: `coffer-test-${++n}` });
  };

  kmsProviderSuite('aws-kms', make);

  it('sends the context as EncryptionContext and finds its versions again by alias', async () => {
    const kms = await make();
    const dek = randomBytes(32);
    const wrapped = await kms.wrap(dek, 'ws|coffer_workspace_ws_secret_x_v1');
    const encrypt = endpoint.requests.filter((r) => r.target === 'Encrypt').at(-1)!;
    expect(JSON.parse(encrypt.body).EncryptionContext).toEqual({ coffer_context: 'ws|coffer_workspace_ws_secret_x_v1' });
    const again = await createAwsKms({ client: clients.at(-1)!, kekId: `coffer-test-${n}` });
    expect(again.primaryVersion()).toBe(kms.primaryVersion());
    expect(await again.unwrap(wrapped, 'ws|coffer_workspace_ws_secret_x_v1')).toEqual(dek);
  });

  it('says which KEK is unavailable without echoing AWS messages', async () => {
    const down = new KMSClient({ region: 'us-east-1', endpoint: 'http://127.0.0.1:1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, maxAttempts: 1 });
    clients.push(down);
    await expect(createAwsKms({ client: down, kekId: 'unreachable' })).rejects.toMatchObject({ code: 'unavailable' });
  });
});
