import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** PEM file paths of one certificate and its key. */
export interface CertificateFiles {
  certFile: string;
  keyFile: string;
}

/** A development CA and one certificate per name (CN = the name, usable as server and as client). */
export interface DevCertificates {
  caFile: string;
  certificates: Record<string, CertificateFiles>;
}

/**
 * Makes a throwaway CA and a certificate for each name with the `openssl` command (P-256 keys, one day,
 * SAN for 127.0.0.1 and localhost), for running the stack with mutual TLS on one machine. The CA key
 * stays in `dir`; nothing here is fit for production.
 */
export async function generateDevCertificates(dir: string, names: readonly string[]): Promise<DevCertificates> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const caFile = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  await run('openssl', ['req', '-x509', ...ec, '-keyout', caKey, '-out', caFile, '-subj', '/CN=coffer-dev-ca', '-days', '1']);
  const ext = join(dir, 'leaf.ext');
  await writeFile(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature\n');
  const certificates: Record<string, CertificateFiles> = {};
  for (const name of names) {
    const keyFile = join(dir, `${name}.key`);
    const csr = join(dir, `${name}.csr`);
    const certFile = join(dir, `${name}.crt`);
    await run('openssl', ['req', '-new', ...ec, '-keyout', keyFile, '-out', csr, '-subj', `/CN=${name}`]);
    await run('openssl', ['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-CAcreateserial', '-out', certFile, '-days', '1', '-extfile', ext]);
    certificates[name] = { certFile, keyFile };
  }
  return { caFile, certificates };
}
