import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { create, createFileRegistry, fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authV1, configV1, secretsV1, syncV1 } from '@coffer/contracts';
import { defineService } from './define-service';
import { createGrpcServer, type GrpcServer } from './grpc-server';
import { captureLogger, reflect } from '../test/fixtures';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const buf = join(root, 'node_modules/.bin/buf');

/** Every service a Coffer process serves, and one call per service that buf curl makes through reflection. */
const services: Array<{ name: string; definition: grpc.ServiceDefinition; probe: { method: string; body: Record<string, string>; field: string } }> = [
  { name: 'coffer.auth.v1.AuthService', definition: authV1.AuthServiceService, probe: { method: 'RevokeToken', body: { token_id: 'jti-1' }, field: 'tokenId' } },
  { name: 'coffer.config.v1.ConfigService', definition: configV1.ConfigServiceService, probe: { method: 'GetWorkspace', body: { workspace_id: 'ws-1' }, field: 'workspaceId' } },
  { name: 'coffer.secrets.v1.SecretsService', definition: secretsV1.SecretsServiceService, probe: { method: 'ListSecretVersions', body: { base_coordinate: 'coffer_x' }, field: 'baseCoordinate' } },
  { name: 'coffer.sync.v1.SyncService', definition: syncV1.SyncServiceService, probe: { method: 'GetSyncJob', body: { job_id: 'job-1' }, field: 'jobId' } },
];

/** buf curl over plaintext HTTP/2 with gRPC, every schema taken from the server's reflection. */
async function bufCurl(args: string[]): Promise<string> {
  const { stdout } = await run(buf, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', '--reflect', ...args], { cwd: root, timeout: 30_000 });
  return stdout;
}

/** The files reflection answers for a symbol, decoded: nothing but what a reflection client sees. */
async function reflectedFiles(address: string, symbol: string): Promise<FileDescriptorProto[]> {
  const res = await reflect(address, { file_containing_symbol: symbol });
  expect(res.error_response).toBeUndefined();
  return res.file_descriptor_response!.file_descriptor_proto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
}

for (const service of services) {
  describe(`reflection of ${service.name}: a client that knows nothing but reflection`, () => {
    let server: GrpcServer;
    let url: string;
    let address: string;
    const received: unknown[] = [];

    beforeAll(async () => {
      // Every method answers its empty response; the probe also records what it was sent.
      const handlers = Object.fromEntries(
        Object.entries(service.definition).map(([key, method]) => [
          key,
          {
            permission: 'public' as const,
            handler: async (req: unknown) => {
              if (method.path.endsWith(`/${service.probe.method}`)) received.push(req);
              return method.responseDeserialize(Buffer.alloc(0));
            },
          },
        ]),
      );
      server = createGrpcServer({ services: [defineService(service.definition, service.name, handlers as never)], logger: captureLogger().logger });
      const port = await server.listen('127.0.0.1:0');
      address = `127.0.0.1:${port}`;
      url = `http://${address}`;
    });

    afterAll(async () => {
      await server?.shutdown();
    });

    it('lists every method with buf curl --list-methods, Health and reflection included', async () => {
      const listed = (await bufCurl(['--list-methods', url])).trim().split('\n').sort();
      const own = Object.values(service.definition).map((m) => m.path.slice(1));
      expect(listed).toEqual(
        [
          ...own,
          'grpc.health.v1.Health/Check',
          'grpc.health.v1.Health/List',
          'grpc.health.v1.Health/Watch',
          'grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
          'grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo',
        ].sort(),
      );
    });

    it('calls grpc.health.v1.Health/Check through reflection, for the server and for the service', async () => {
      expect(JSON.parse(await bufCurl([`${url}/grpc.health.v1.Health/Check`]))).toEqual({ status: 'SERVING' });
      expect(JSON.parse(await bufCurl(['-d', JSON.stringify({ service: service.name }), `${url}/grpc.health.v1.Health/Check`]))).toEqual({ status: 'SERVING' });
    });

    it('calls one of the service’s own methods through reflection, the request encoded from the reflected schema', async () => {
      expect(JSON.parse(await bufCurl(['-d', JSON.stringify(service.probe.body), `${url}/${service.name}/${service.probe.method}`]))).toEqual({});
      expect(received.at(-1)).toMatchObject({ [service.probe.field]: Object.values(service.probe.body)[0] });
    });

    it('serves descriptors in which every type of every method resolves, with fully qualified names', async () => {
      const files = [...(await reflectedFiles(address, service.name)), ...(await reflectedFiles(address, 'grpc.health.v1.Health'))];
      const unique = [...new Map(files.map((f) => [f.name, f])).values()];
      expect(unique.map((f) => f.name)).toContain('grpc/health/v1/health.proto');
      for (const file of unique) {
        for (const message of file.messageType) {
          for (const field of message.field) if (field.typeName) expect(field.typeName, `${file.name} ${message.name}.${field.name}`).toMatch(/^\./);
        }
      }
      // createFileRegistry throws on any reference it cannot resolve.
      const resolved = createFileRegistry(create(FileDescriptorSetSchema, { file: unique }));
      const own = resolved.getService(service.name)!;
      expect(own.methods.map((m) => `/${service.name}/${m.name}`).sort()).toEqual(Object.values(service.definition).map((m) => m.path).sort());
      for (const method of own.methods) expect(method.input.typeName && method.output.typeName).toBeTruthy();
      const health = resolved.getService('grpc.health.v1.Health')!;
      expect(health.methods.find((m) => m.name === 'Check')!.output.typeName).toBe('grpc.health.v1.HealthCheckResponse');
    });
  });
}
