export { startStack, stackServices, type RunningService, type Stack, type StackOptions, type StackService } from './stack';
export { devCredentialFiles, generateDevCredentials, type DevCredentials } from './dev-credentials';
export { generateDevCertificates, type CertificateFiles, type DevCertificates } from './dev-certificates';
export { doctorCommand, runDoctor, writeServiceEnvFiles, type DoctorReport } from './doctor';
export type { DoctorFinding } from './doctor-settings';
