import { createFileRegistry, fromBinary, type DescMethod, type DescService } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { descriptorSetBase64 } from '@coffer/contracts';

/** The upstream service a forwarded method belongs to. */
export type Upstream = 'auth' | 'config';

/**
 * Methods the edge does not serve: service-to-service ones (service tokens, the sync plan, end users'
 * workspaces made by auth) and operator ones about service identities. Everything else of auth and
 * config is public and forwarded as it is.
 */
export const NOT_FORWARDED: ReadonlySet<string> = new Set([
  'coffer.auth.v1.AuthService/IssueServiceToken',
  'coffer.auth.v1.AuthService/RevokeServiceIdentity',
  'coffer.config.v1.ConfigService/GetSyncPlan',
  'coffer.config.v1.ConfigService/GetCredentialRevocation',
  'coffer.config.v1.ConfigService/CompleteCredentialRevocation',
  'coffer.config.v1.ConfigService/ProvisionWorkspace',
]);

const SERVICES: ReadonlyArray<[string, Upstream]> = [
  ['coffer.auth.v1.AuthService', 'auth'],
  ['coffer.config.v1.ConfigService', 'config'],
];

/** One forwarded method: its descriptor (for the Connect, gRPC-Web and gRPC codecs) and where it goes. */
export interface ForwardedMethod {
  /** `package.Service/Method`, the gRPC path without its leading slash. */
  path: string;
  upstream: Upstream;
  method: DescMethod;
}

/** The Coffer protos as @bufbuild/protobuf descriptors, read from the descriptor set buf compiled. */
export function cofferRegistry() {
  return createFileRegistry(fromBinary(FileDescriptorSetSchema, Buffer.from(descriptorSetBase64, 'base64')));
}

/** Every method the edge forwards, unary ones of auth and config minus {@link NOT_FORWARDED}. */
export function forwardedMethods(registry = cofferRegistry()): ForwardedMethod[] {
  const out: ForwardedMethod[] = [];
  for (const [typeName, upstream] of SERVICES) {
    const service: DescService | undefined = registry.getService(typeName);
    if (!service) throw new Error(`the descriptor set has no ${typeName}`);
    for (const method of service.methods) {
      const path = `${typeName}/${method.name}`;
      if (method.methodKind !== 'unary' || NOT_FORWARDED.has(path)) continue;
      out.push({ path, upstream, method });
    }
  }
  return out;
}
