export * as authV1 from './gen/coffer/auth/v1/auth';
export * as configV1 from './gen/coffer/config/v1/config';
export * as secretsV1 from './gen/coffer/secrets/v1/secrets';
export * as syncV1 from './gen/coffer/sync/v1/sync';
export * as eventsV1 from './gen/coffer/events/v1/events';
export { descriptorSetBase64, grpcDescriptorSetBase64 } from './gen/descriptor';
export * from './errors';
export * from './events';
export * from './coordinates';
