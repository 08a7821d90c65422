import { describe, expect, it } from 'vitest';
import { loadAuthConfig } from '../../auth/src/config';
import { loadConfigServiceConfig } from '../../config/src/config';
import { loadSecretsConfig } from '../../secrets/src/config';
import { loadSyncWorkerConfig } from '../../sync-worker/src/config';
import { bindHost, isLoopbackHost, secretWeakness, settingsFindings, type DoctorFinding, type ServiceSettings } from './doctor-settings';

const strong = (tag: string) => `${tag}-Xq7vR2mLp9Zt4Kw8Bn3Hs6Jd`;
const signingKey = JSON.stringify({ kty: 'OKP', crv: 'Ed25519', d: 'ZA', x: 'eA', kid: 'k1' });

/** Settings of all four services as they would parse from their environments; `over` changes one service's env. */
function settings(over: Partial<Record<keyof ServiceSettings, Record<string, string>>> = {}, env: Record<string, string> = { COFFER_ENV: 'production' }): ServiceSettings {
  const base = { DATABASE_URL: 'postgres://h/db', ...env };
  const identities = JSON.stringify([
    { clientId: 'config', clientSecret: over.config?.CONFIG_CLIENT_SECRET ?? strong('config'), role: 'config' },
    { clientId: 'sync-worker', clientSecret: over['sync-worker']?.SYNC_WORKER_CLIENT_SECRET ?? strong('sync'), role: 'sync-worker' },
  ]);
  return {
    auth: loadAuthConfig({ ...base, AUTH_SIGNING_KEY: signingKey, AUTH_SERVICE_IDENTITIES: identities, ...over.auth }),
    secrets: loadSecretsConfig({ ...base, SECRETS_KMS_PROVIDER: 'pkcs11', SECRETS_PKCS11_LIBRARY: '/hsm.so', SECRETS_PKCS11_TOKEN_LABEL: 't', SECRETS_PKCS11_PIN: '1234', ...over.secrets }),
    config: loadConfigServiceConfig({ ...base, CONFIG_CLIENT_SECRET: strong('config'), ...over.config }),
    'sync-worker': loadSyncWorkerConfig({ ...base, SYNC_WORKER_CLIENT_SECRET: strong('sync'), ...over['sync-worker'] }),
  };
}

const problems = (findings: DoctorFinding[]) => findings.filter((f) => f.severity === 'fail' || f.severity === 'warn');
const of = (findings: DoctorFinding[], check: string) => findings.filter((f) => f.check === check);

describe('coffer doctor: the checks on settings', () => {
  it('passes a production configuration on the loopback with a hardware KMS and the defaults', () => {
    const findings = settingsFindings(settings());
    expect(problems(findings)).toEqual([]);
    expect(new Set(findings.map((f) => f.check))).toEqual(new Set(['listen-without-mtls', 'weak-service-secret', 'local-kms', 'token-lifetimes', 'revocation-fail-open', 'connector-egress']));
  });

  it('fails a service listening beyond the loopback without mutual TLS, and passes it with mutual TLS', () => {
    const open = settingsFindings(settings({ config: { CONFIG_GRPC_ADDRESS: '0.0.0.0:50052' } }));
    expect(of(open, 'listen-without-mtls')).toEqual([expect.objectContaining({ severity: 'fail', service: 'config', setting: 'CONFIG_GRPC_ADDRESS', fix: expect.stringContaining('COFFER_TLS_CA_FILE') })]);
    const tls = { COFFER_TLS_CA_FILE: '/ca', COFFER_TLS_CERT_FILE: '/c', COFFER_TLS_KEY_FILE: '/k', CONFIG_GRPC_ADDRESS: '0.0.0.0:50052' };
    expect(problems(of(settingsFindings(settings({ config: tls })), 'listen-without-mtls'))).toEqual([]);
    expect(of(settingsFindings(settings({ config: { CONFIG_GRPC_ADDRESS: '0.0.0.0:50052' } }, { COFFER_ENV: 'development' })), 'listen-without-mtls')[0]!.severity).toBe('warn');
  });

  it('knows loopback bind addresses in their usual spellings', () => {
    expect(['127.0.0.1:0', 'localhost:50051', '[::1]:50051', '127.1.2.3:5'].map((a) => isLoopbackHost(bindHost(a)))).toEqual([true, true, true, true]);
    expect(['0.0.0.0:50051', '[::]:50051', '10.0.0.5:50051', 'auth:50051'].map((a) => isLoopbackHost(bindHost(a)))).toEqual([false, false, false, false]);
  });

  it('fails weak, default or shared service secrets, naming the setting and client id but never the value', () => {
    const weak = 'changeme-changeme-1';
    const findings = settingsFindings(settings({ config: { CONFIG_CLIENT_SECRET: weak } }));
    const found = of(findings, 'weak-service-secret');
    expect(found).toEqual([
      expect.objectContaining({ severity: 'fail', service: 'auth', setting: 'AUTH_SERVICE_IDENTITIES', message: expect.stringContaining('identity config (config)') }),
      expect.objectContaining({ severity: 'fail', service: 'config', setting: 'CONFIG_CLIENT_SECRET' }),
    ]);
    expect(JSON.stringify(findings)).not.toContain(weak);
    expect(secretWeakness('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa')).toMatch(/different characters/);
    expect(secretWeakness('Str0ng-but-says-Password-123456789')).toMatch(/common word/);
    expect(secretWeakness('kT4-Vb9qLx2mRz7Wc8Hn5Jp3')).toBeUndefined();
    const shared = JSON.stringify([
      { clientId: 'config', clientSecret: strong('same'), role: 'config' },
      { clientId: 'operator', clientSecret: strong('same'), role: 'operator' },
    ]);
    expect(of(settingsFindings(settings({ auth: { AUTH_SERVICE_IDENTITIES: shared } })), 'weak-service-secret')).toEqual([
      expect.objectContaining({ severity: 'fail', message: 'service identities config and operator share one secret: either can act as the other' }),
    ]);
  });

  it('reports the local KMS as a warning in development and as a failure outside it', () => {
    const local = { SECRETS_KMS_PROVIDER: 'local', SECRETS_LOCAL_KEYRING_FILE: '/k.json' };
    expect(of(settingsFindings(settings({ secrets: local }, { COFFER_ENV: 'development' })), 'local-kms')).toEqual([expect.objectContaining({ severity: 'warn', service: 'secrets' })]);
    expect(of(settingsFindings(settings({ secrets: local })), 'local-kms')).toEqual([expect.objectContaining({ severity: 'fail', fix: expect.stringContaining('pkcs11, aws-kms or gcp-kms') })]);
  });

  it('warns of token lifetimes above the defaults, one finding per setting', () => {
    const found = of(settingsFindings(settings({ auth: { AUTH_SCOPED_TOKEN_TTL_SECONDS: '3600', AUTH_SERVICE_TOKEN_TTL_SECONDS: '600' } })), 'token-lifetimes');
    expect(found).toEqual([expect.objectContaining({ severity: 'warn', setting: 'AUTH_SCOPED_TOKEN_TTL_SECONDS', fix: expect.stringContaining('1200') })]);
  });

  it('fails revocations that fail open outside development', () => {
    expect(of(settingsFindings(settings({ secrets: { COFFER_REVOCATION_FAIL_OPEN: 'true' } })), 'revocation-fail-open')).toEqual([
      expect.objectContaining({ severity: 'fail', service: 'secrets', setting: 'COFFER_REVOCATION_FAIL_OPEN' }),
    ]);
  });

  it('fails egress to the metadata address or a whole private range, and warns of single private hosts', () => {
    const egress = (allow: string) => of(settingsFindings(settings({ 'sync-worker': { SYNC_WORKER_EGRESS_ALLOW: allow } })), 'connector-egress');
    expect(egress('')).toEqual([expect.objectContaining({ severity: 'pass' })]);
    expect(egress('169.254.0.0/16')).toEqual([expect.objectContaining({ severity: 'fail', message: expect.stringContaining('metadata') })]);
    expect(egress('metadata.google.internal')).toEqual([expect.objectContaining({ severity: 'fail' })]);
    expect(egress('10.0.0.0/8')).toEqual([expect.objectContaining({ severity: 'fail', message: expect.stringContaining('whole private range') })]);
    expect(egress('0.0.0.0/0')).toEqual([expect.objectContaining({ severity: 'fail' })]);
    expect(egress('10.1.2.3:5432')).toEqual([expect.objectContaining({ severity: 'warn', message: expect.stringContaining('private address') })]);
    expect(egress('db.internal:5432')).toEqual([expect.objectContaining({ severity: 'warn' })]);
    expect(egress('8.8.8.8')).toEqual([expect.objectContaining({ severity: 'pass' })]);
  });
});
