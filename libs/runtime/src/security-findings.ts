import type { Logger } from '@coffer/telemetry';

/** A setting that weakens a security guarantee: reported at start-up so an operator sees it. */
export interface SecurityFinding {
  /** Stable id, e.g. `revocation-fail-open`. */
  id: string;
  /** The environment variable that causes it. */
  setting: string;
  message: string;
}

/** The shared settings `securityFindings` looks at (a subset of `commonEnv`). */
export interface SecuritySettings {
  COFFER_REVOCATION_FAIL_OPEN?: boolean;
}

/** The settings of a parsed configuration that weaken security; empty when none does. */
export function securityFindings(config: SecuritySettings): SecurityFinding[] {
  const findings: SecurityFinding[] = [];
  if (config.COFFER_REVOCATION_FAIL_OPEN) {
    findings.push({
      id: 'revocation-fail-open',
      setting: 'COFFER_REVOCATION_FAIL_OPEN',
      message: 'tokens are accepted while the revocation list cannot be read: a revoked token keeps working until it can',
    });
  }
  return findings;
}

/** Logs each finding once, at level warn; returns them. */
export function logSecurityFindings(logger: Logger, config: SecuritySettings): SecurityFinding[] {
  const findings = securityFindings(config);
  for (const f of findings) logger.warn({ event: 'security_finding', finding: f.id, setting: f.setting }, f.message);
  return findings;
}
