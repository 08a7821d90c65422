import { BlockList, isIP } from 'node:net';
import type { AuthConfig } from '../../auth/src/config';
import type { ConfigServiceConfig } from '../../config/src/config';
import type { SecretsConfig } from '../../secrets/src/config';
import type { SyncWorkerConfig } from '../../sync-worker/src/config';
import { securityFindings } from '@coffer/runtime';
import { deniedBy, normalizeHost } from '../../sync-worker/src/connectors/egress-policy';
import type { StackService } from './stack';

/** How bad a finding is: `fail` makes `coffer doctor` exit 1. */
export type Severity = 'pass' | 'warn' | 'fail' | 'skip';

/** One result of a check: what was found, where, and how to fix it. Never a secret value. */
export interface DoctorFinding {
  /** Stable id of the check, e.g. `weak-service-secret`. */
  check: string;
  severity: Severity;
  /** The service whose settings or data it concerns, when one. */
  service?: StackService;
  /** The setting that causes it, when one. */
  setting?: string;
  message: string;
  /** What to do about it (absent on a pass). */
  fix?: string;
}

/** The parsed settings of each service the doctor could read (a service left out was not given). */
export interface ServiceSettings {
  auth?: AuthConfig;
  secrets?: SecretsConfig;
  config?: ConfigServiceConfig;
  'sync-worker'?: SyncWorkerConfig;
}

/** The defaults the token lifetimes and rotation intervals are compared with (those of the settings schemas). */
export const securityDefaults = {
  AUTH_SERVICE_TOKEN_TTL_SECONDS: 900,
  AUTH_APPLICATION_TOKEN_TTL_SECONDS: 900,
  AUTH_SCOPED_TOKEN_TTL_SECONDS: 1200,
  AUTH_WIDGET_TOKEN_TTL_SECONDS: 1200,
  AUTH_SIGNING_KEY_ROTATION_SECONDS: 86400,
  SECRETS_KEK_ROTATION_DAYS: 365,
} as const;

const grpcAddressSetting: Record<StackService, string> = {
  auth: 'AUTH_GRPC_ADDRESS',
  secrets: 'SECRETS_GRPC_ADDRESS',
  config: 'CONFIG_GRPC_ADDRESS',
  'sync-worker': 'SYNC_WORKER_GRPC_ADDRESS',
};

/** Whether every service given is a development one (`COFFER_ENV=development`). */
export function isDevelopment(settings: ServiceSettings): boolean {
  const all = Object.values(settings).filter(Boolean) as Array<{ COFFER_ENV: string }>;
  return all.length > 0 && all.every((s) => s.COFFER_ENV === 'development');
}

/** The host part of a `host:port` bind address (`[::1]:50051`, `0.0.0.0:50051`, `localhost:0`). */
export function bindHost(address: string): string {
  const m = /^\[([^\]]*)\]:\d+$/.exec(address) ?? /^(.*):\d+$/.exec(address);
  return (m?.[1] ?? address).toLowerCase();
}

/** Whether a bind host is reachable from this machine only. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  const ip = normalizeHost(host);
  if (!ip || !isIP(ip)) return false;
  return deniedBy(ip)?.name === 'loopback';
}

function listening(settings: ServiceSettings, dev: boolean): DoctorFinding[] {
  const findings: DoctorFinding[] = [];
  for (const [service, s] of Object.entries(settings) as Array<[StackService, { COFFER_TLS_CA_FILE?: string } & Record<string, unknown>]>) {
    if (!s) continue;
    const setting = grpcAddressSetting[service];
    const address = String(s[setting]);
    const host = bindHost(address);
    if (isLoopbackHost(host) || s.COFFER_TLS_CA_FILE) continue;
    findings.push({
      check: 'listen-without-mtls',
      severity: dev ? 'warn' : 'fail',
      service,
      setting,
      message: `${service} listens on ${address}, beyond the loopback, without mutual TLS: anyone who reaches that address can call it`,
      fix: `bind ${setting} to 127.0.0.1 (behind a proxy that authenticates), or set COFFER_TLS_CA_FILE, COFFER_TLS_CERT_FILE and COFFER_TLS_KEY_FILE on every service`,
    });
  }
  return findings.length ? findings : [{ check: 'listen-without-mtls', severity: 'pass', message: 'every service listens on the loopback only, or with mutual TLS' }];
}

const commonWords = ['password', 'passwd', 'secret', 'changeme', 'change-me', 'change_me', 'default', 'example', 'coffer', 'admin', 'letmein', 'qwerty', '123456', 'abcdef'];

/** Why a service secret is weak or a known default, or undefined when it looks random enough. Never quotes it. */
export function secretWeakness(secret: string): string | undefined {
  if (secret.length < 24) return `shorter than 24 characters (${secret.length})`;
  const distinct = new Set(secret).size;
  if (distinct < 12) return `only ${distinct} different characters`;
  const lower = secret.toLowerCase();
  const word = commonWords.find((w) => lower.includes(w));
  if (word) return `contains a common word or default ("${word}")`;
  return undefined;
}

function weakSecrets(settings: ServiceSettings): DoctorFinding[] {
  const findings: DoctorFinding[] = [];
  const fix = (where: string) =>
    `generate a random secret (\`openssl rand -base64 32\`), set it in ${where} and in auth's AUTH_SERVICE_IDENTITIES for that client id, then restart auth and the service`;
  const seen = new Map<string, string>();
  for (const identity of settings.auth?.AUTH_SERVICE_IDENTITIES ?? []) {
    const weak = secretWeakness(identity.clientSecret);
    if (weak) {
      findings.push({
        check: 'weak-service-secret',
        severity: 'fail',
        service: 'auth',
        setting: 'AUTH_SERVICE_IDENTITIES',
        message: `the secret of service identity ${identity.clientId} (${identity.role}) is weak: ${weak}`,
        fix: fix(`the ${identity.role} service's client secret setting`),
      });
    }
    const other = seen.get(identity.clientSecret);
    if (other) {
      findings.push({
        check: 'weak-service-secret',
        severity: 'fail',
        service: 'auth',
        setting: 'AUTH_SERVICE_IDENTITIES',
        message: `service identities ${other} and ${identity.clientId} share one secret: either can act as the other`,
        fix: fix('each service'),
      });
    }
    seen.set(identity.clientSecret, identity.clientId);
  }
  const own: Array<[StackService, string, string | undefined]> = [
    ['config', 'CONFIG_CLIENT_SECRET', settings.config?.CONFIG_CLIENT_SECRET],
    ['sync-worker', 'SYNC_WORKER_CLIENT_SECRET', settings['sync-worker']?.SYNC_WORKER_CLIENT_SECRET],
  ];
  for (const [service, setting, secret] of own) {
    const weak = secret === undefined ? undefined : secretWeakness(secret);
    if (weak) findings.push({ check: 'weak-service-secret', severity: 'fail', service, setting, message: `${setting} of ${service} is weak: ${weak}`, fix: fix(setting) });
  }
  return findings.length ? findings : [{ check: 'weak-service-secret', severity: 'pass', message: 'every service secret given is long, varied and no known default' }];
}

function localKms(settings: ServiceSettings, dev: boolean): DoctorFinding[] {
  const secrets = settings.secrets;
  if (!secrets) return [{ check: 'local-kms', severity: 'skip', message: 'the secrets service\'s settings were not given' }];
  if (secrets.SECRETS_KMS_PROVIDER !== 'local') {
    return [{ check: 'local-kms', severity: 'pass', service: 'secrets', message: `the KMS provider is ${secrets.SECRETS_KMS_PROVIDER}` }];
  }
  return [
    {
      check: 'local-kms',
      severity: dev ? 'warn' : 'fail',
      service: 'secrets',
      setting: 'SECRETS_KMS_PROVIDER',
      message: `secrets uses the local KMS provider: the key that wraps every data key is a file${dev ? ' (acceptable in development only)' : ', outside development'}`,
      fix: 'outside development set SECRETS_KMS_PROVIDER to pkcs11, aws-kms or gcp-kms with its settings (apps/secrets/README.md), then rotate the KEK so every data key is re-wrapped by it',
    },
  ];
}

function tokenLifetimes(settings: ServiceSettings): DoctorFinding[] {
  const auth = settings.auth;
  if (!auth) return [{ check: 'token-lifetimes', severity: 'skip', message: 'the auth service\'s settings were not given' }];
  const keys = ['AUTH_SERVICE_TOKEN_TTL_SECONDS', 'AUTH_APPLICATION_TOKEN_TTL_SECONDS', 'AUTH_SCOPED_TOKEN_TTL_SECONDS', 'AUTH_WIDGET_TOKEN_TTL_SECONDS'] as const;
  const longer = keys.filter((k) => auth[k] > securityDefaults[k]);
  if (longer.length === 0) return [{ check: 'token-lifetimes', severity: 'pass', service: 'auth', message: 'no token lives longer than the default' }];
  return longer.map((k) => ({
    check: 'token-lifetimes',
    severity: 'warn' as const,
    service: 'auth' as const,
    setting: k,
    message: `${k} is ${auth[k]} s, above the default ${securityDefaults[k]} s: a stolen token stays usable longer`,
    fix: `lower ${k} to ${securityDefaults[k]} or less (unset it for the default)`,
  }));
}

function revocationFailOpen(settings: ServiceSettings, dev: boolean): DoctorFinding[] {
  // The same rule each service logs at start-up (libs/runtime securityFindings), with a fix attached.
  const open = (Object.entries(settings) as Array<[StackService, { COFFER_REVOCATION_FAIL_OPEN: boolean } | undefined]>).flatMap(([service, s]) =>
    s ? securityFindings(s).filter((f) => f.id === 'revocation-fail-open').map((f) => ({ service, finding: f })) : [],
  );
  if (open.length === 0) return [{ check: 'revocation-fail-open', severity: 'pass', message: 'every service refuses tokens while it cannot read the revocation list' }];
  return open.map(({ service, finding }) => ({
    check: 'revocation-fail-open',
    severity: dev ? ('warn' as const) : ('fail' as const),
    service,
    setting: finding.setting,
    message: finding.message,
    fix: `unset COFFER_REVOCATION_FAIL_OPEN on ${service} (the default, false, answers UNAVAILABLE instead)`,
  }));
}

/** Whether an egress allow-list entry reaches the cloud metadata address or a whole private range. */
function egressBreadth(entry: string): { kind: 'metadata' | 'range' | 'address' | 'name'; denied?: string } {
  const slash = entry.indexOf('/');
  if (slash >= 0) {
    const network = entry.slice(0, slash);
    const prefix = Number(entry.slice(slash + 1));
    const v4 = isIP(network) === 4;
    const metadata = v4 ? '169.254.169.254' : 'fd00:ec2::254';
    const range = new BlockList();
    range.addSubnet(network, prefix, v4 ? 'ipv4' : 'ipv6');
    const inRange = range.check(metadata, v4 ? 'ipv4' : 'ipv6');
    if (inRange) return { kind: 'metadata' };
    if (prefix === (v4 ? 32 : 128)) return { kind: 'address', denied: deniedBy(network)?.name };
    return { kind: 'range', denied: deniedBy(network)?.name ?? (prefix <= (v4 ? 8 : 32) ? 'a broad range' : undefined) };
  }
  const host = entry.replace(/^\[|\](:\d+)?$/g, '').replace(/:\d+$/, '');
  if (isIP(host)) {
    const rule = deniedBy(host);
    return rule?.name === 'metadata' ? { kind: 'metadata' } : { kind: 'address', denied: rule?.name };
  }
  return ['metadata.google.internal', 'metadata.goog', 'metadata'].includes(host) ? { kind: 'metadata' } : { kind: 'name' };
}

function connectorEgress(settings: ServiceSettings): DoctorFinding[] {
  const worker = settings['sync-worker'];
  if (!worker) return [{ check: 'connector-egress', severity: 'skip', message: 'the sync worker\'s settings were not given' }];
  const findings: DoctorFinding[] = [];
  for (const entry of worker.SYNC_WORKER_EGRESS_ALLOW) {
    const { kind, denied } = egressBreadth(entry);
    if (kind === 'metadata') {
      findings.push({
        check: 'connector-egress',
        severity: 'fail',
        service: 'sync-worker',
        setting: 'SYNC_WORKER_EGRESS_ALLOW',
        message: `connectors may reach the cloud metadata service through "${entry}": a tenant's connector could read the machine's cloud credentials`,
        fix: `remove "${entry}" from SYNC_WORKER_EGRESS_ALLOW`,
      });
    } else if (kind === 'range' && denied) {
      findings.push({
        check: 'connector-egress',
        severity: 'fail',
        service: 'sync-worker',
        setting: 'SYNC_WORKER_EGRESS_ALLOW',
        message: `connectors may reach a whole ${denied} range, "${entry}": a tenant's connector can probe the internal network`,
        fix: `narrow "${entry}" in SYNC_WORKER_EGRESS_ALLOW to the one host:port a connector needs`,
      });
    } else if ((kind === 'address' && denied) || kind === 'name') {
      findings.push({
        check: 'connector-egress',
        severity: 'warn',
        service: 'sync-worker',
        setting: 'SYNC_WORKER_EGRESS_ALLOW',
        message: kind === 'name' ? `connectors may reach "${entry}" whatever it resolves to, private addresses included` : `connectors may reach the ${denied} address "${entry}"`,
        fix: `keep "${entry}" only if a connector must reach it${entry.includes(':') ? '' : ', and add the port it needs (host:port)'}`,
      });
    }
  }
  return findings.length ? findings : [{ check: 'connector-egress', severity: 'pass', service: 'sync-worker', message: 'connectors reach no loopback, private, link-local or metadata address' }];
}

/** The checks that need the settings only: listening, service secrets, KMS, token lifetimes, revocations, connector egress. */
export function settingsFindings(settings: ServiceSettings): DoctorFinding[] {
  const dev = isDevelopment(settings);
  return [
    ...listening(settings, dev),
    ...weakSecrets(settings),
    ...localKms(settings, dev),
    ...tokenLifetimes(settings),
    ...revocationFailOpen(settings, dev),
    ...connectorEgress(settings),
  ];
}
