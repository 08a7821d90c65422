export { startStack, stackServices, type RunningService, type Stack, type StackOptions, type StackService } from './stack';
export { generateDevCredentials, type DevCredentials } from './dev-credentials';
