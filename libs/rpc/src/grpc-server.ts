import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { metrics } from '@opentelemetry/api';
import { HealthImplementation, type ServingStatusMap } from 'grpc-health-check';
import { descriptorSetBase64, grpcDescriptorSetBase64 } from '@coffer/contracts';
import type { Logger } from '@coffer/telemetry';
import type { TokenVerifier } from '@coffer/tokens';
import type { ServiceRegistration } from './define-service';
import { wrapUnary } from './unary-middleware';

/** Options of {@link createGrpcServer}. */
export interface GrpcServerOptions {
  services: ServiceRegistration[];
  /** Required as soon as one method is not 'public'. */
  verifier?: TokenVerifier;
  logger: Logger;
  /** Default: insecure (plaintext); pass `mtlsServerCredentials(...)` for mutual TLS. */
  credentials?: grpc.ServerCredentials;
  /**
   * With mutual TLS: a verified client certificate whose CN is a service role identifies that service.
   * A call without a bearer token is then that service's; a service token must carry the same role.
   */
  certificateIdentity?: boolean;
  /** How long `shutdown()` waits for in-flight calls before cancelling them; default 10 s. */
  shutdownTimeoutMs?: number;
}

/** A gRPC server with Coffer's middleware, health and reflection. */
export interface GrpcServer {
  /** Binds (e.g. `127.0.0.1:0`) and resolves the bound port. */
  listen(address: string): Promise<number>;
  /** Reports NOT_SERVING, lets in-flight calls finish (bounded), then stops. */
  shutdown(): Promise<void>;
  /** Flips the health status of '' and every registered service. */
  setServing(serving: boolean): void;
}

const HEALTH_SERVICE = 'grpc.health.v1.Health';
const REFLECTION_SERVICES = ['grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'];

/**
 * What reflection serves: each file exactly as buf compiled it (fully qualified type names, map entries
 * named as protoc names them), the Coffer protos and the health and reflection protos alike. Passing
 * proto-loader's definitions instead would re-derive the files through protobufjs, which writes type
 * names relative to their package: reflection clients (buf curl, grpcurl) then cannot resolve
 * grpc.health.v1.Health/Check. @grpc/reflection reads only `fileDescriptorProtos` from each entry.
 */
function reflectionPackage(): protoLoader.PackageDefinition {
  const definition: protoLoader.PackageDefinition = {};
  for (const set of [descriptorSetBase64, grpcDescriptorSetBase64]) {
    for (const file of fromBinary(FileDescriptorSetSchema, Buffer.from(set, 'base64')).file) {
      const entry: protoLoader.ProtobufTypeDefinition = { format: 'FileDescriptorProto', type: {}, fileDescriptorProtos: [Buffer.from(toBinary(FileDescriptorProtoSchema, file))] };
      definition[file.name] = entry as protoLoader.AnyDefinition;
    }
  }
  return definition;
}

/**
 * Creates a gRPC server: each registered unary method behind auth, permission and error-mapping
 * middleware, plus grpc.health.v1.Health and server reflection (v1 and v1alpha).
 */
export function createGrpcServer(options: GrpcServerOptions): GrpcServer {
  const names = options.services.map((s) => s.name);
  const duplicate = names.find((n, i) => names.indexOf(n) !== i);
  if (duplicate) throw new Error(`service ${duplicate} registered twice`);
  const needsVerifier = options.services.some((s) => Object.values(s.methods).some((m) => m.permission !== 'public'));
  if (needsVerifier && !options.verifier) throw new Error('createGrpcServer: protected methods need a token verifier');

  const server = new grpc.Server();
  const duration = metrics.getMeter('@coffer/rpc').createHistogram('rpc.server.duration', {
    unit: 'ms',
    description: 'time to answer a unary call, by service, method and gRPC status code',
    advice: { explicitBucketBoundaries: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000] },
  });
  for (const service of options.services) {
    const implementation: grpc.UntypedServiceImplementation = {};
    for (const [key, method] of Object.entries(service.definition)) {
      const spec = service.methods[key];
      if (!spec) throw new Error(`${service.name}.${key}: no handler declared`);
      implementation[key] = wrapUnary(method.path, spec, { verifier: options.verifier, logger: options.logger, certificateIdentity: options.certificateIdentity ?? false, duration });
    }
    server.addService(service.definition, implementation);
  }

  const statusMap = (status: 'SERVING' | 'NOT_SERVING'): ServingStatusMap =>
    Object.fromEntries(['', ...names].map((n) => [n, status]));
  const health = new HealthImplementation(statusMap('SERVING'));
  health.addToServer(server);
  new ReflectionService(reflectionPackage(), { services: [...names, HEALTH_SERVICE, ...REFLECTION_SERVICES] }).addToServer(server);

  function setServing(serving: boolean): void {
    for (const [name, status] of Object.entries(statusMap(serving ? 'SERVING' : 'NOT_SERVING'))) health.setStatus(name, status);
  }

  return {
    listen(address) {
      return new Promise((resolve, reject) => {
        server.bindAsync(address, options.credentials ?? grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port)));
      });
    },
    setServing,
    async shutdown() {
      setServing(false);
      const timeoutMs = options.shutdownTimeoutMs ?? 10_000;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          options.logger.warn({ timeoutMs }, 'gRPC calls still running at shutdown; cancelling them');
          server.forceShutdown();
          resolve();
        }, timeoutMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}
