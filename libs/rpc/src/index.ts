export type { CallContext, DefinitionHandlers, MethodSpec, ServiceHandlers } from './call-context';
export { defineService, type ServiceRegistration } from './define-service';
export { ERROR_DETAILS_KEY } from './error-details';
export { createGrpcServer, type GrpcServer, type GrpcServerOptions } from './grpc-server';
export { createPromiseClient, type PromiseClient, type PromiseClientOptions, type TokenProvider } from './promise-client';
export { createServiceTokenProvider, type ServiceTokenProvider, type ServiceTokenProviderOptions } from './service-token-provider';
export { codeOfStatus, statusOfCode } from './status-of-code';
export { INTERNAL_ERROR_MESSAGE } from './unary-middleware';
export { loadMtls, mtlsChannelCredentials, mtlsServerCredentials, type MtlsMaterial } from './mtls';
