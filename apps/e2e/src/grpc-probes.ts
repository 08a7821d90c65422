import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { protoPath as healthProtoPath } from 'grpc-health-check';

const require = createRequire(import.meta.url);
const reflectionProto = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build/proto/grpc/reflection/v1/reflection.proto');

type Ctor = new (address: string, creds: grpc.ChannelCredentials) => grpc.Client;

function loadService(file: string, path: string[]): Ctor {
  const def = protoLoader.loadSync(file, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  let node: unknown = grpc.loadPackageDefinition(def);
  for (const p of path) node = (node as Record<string, unknown>)[p];
  return node as Ctor;
}

/** Calls grpc.health.v1.Health/Check on a server and returns its status name. */
export async function healthStatus(address: string, service = ''): Promise<string> {
  const Health = loadService(healthProtoPath, ['grpc', 'health', 'v1', 'Health']);
  const client = new Health(address, grpc.credentials.createInsecure()) as grpc.Client & {
    check(req: { service: string }, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void;
  };
  try {
    return await new Promise((resolve, reject) =>
      client.check({ service }, { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res!.status))),
    );
  } finally {
    client.close();
  }
}

/** Lists the services a server exposes through gRPC server reflection (v1). */
export async function reflectedServices(address: string): Promise<string[]> {
  const Reflection = loadService(reflectionProto, ['grpc', 'reflection', 'v1', 'ServerReflection']);
  const client = new Reflection(address, grpc.credentials.createInsecure()) as grpc.Client & {
    ServerReflectionInfo(opts: grpc.CallOptions): grpc.ClientDuplexStream<unknown, { list_services_response?: { service: { name: string }[] } }>;
  };
  try {
    return await new Promise((resolve, reject) => {
      const call = client.ServerReflectionInfo({ deadline: Date.now() + 5000 });
      call.on('data', (res: { list_services_response?: { service: { name: string }[] } }) => {
        resolve((res.list_services_response?.service ?? []).map((s) => s.name));
        call.end();
      });
      call.on('error', reject);
      call.write({ host: '', list_services: '' });
    });
  } finally {
    client.close();
  }
}
