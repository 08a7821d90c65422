export { startStack, stackServices, type RunningService, type Stack, type StackOptions, type StackProcess, type StackProgress, type StackService } from './stack';
export { devCredentialFiles, generateDevCredentials, type DevCredentials } from './dev-credentials';
export { generateDevCertificates, type CertificateFiles, type DevCertificates } from './dev-certificates';
export { startDevStack, defaultPorts, type DevStack, type DevStackOptions, type SavedStack, type StackState } from './dev-stack';
export { cofferHome, type CofferHome } from './home';
export { builtinDefinitions, type BuiltinDefinition } from './builtin-definitions';
export { type DevelopmentSeed } from './development-seed';
export { doctorCommand, runDoctor, writeServiceEnvFiles, type DoctorReport } from './doctor';
export type { DoctorFinding } from './doctor-settings';
