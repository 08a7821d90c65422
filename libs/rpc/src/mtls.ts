import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';

/** PEM material for mutual TLS: the CA that signs every Coffer certificate, and this process's own pair. */
export interface MtlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** Reads the CA, certificate and key PEM files; every service and client of a deployment shares the CA. */
export function loadMtls(files: { caFile: string; certFile: string; keyFile: string }): MtlsMaterial {
  return { ca: readFileSync(files.caFile), cert: readFileSync(files.certFile), key: readFileSync(files.keyFile) };
}

/** Server credentials that require a client certificate signed by the CA. */
export function mtlsServerCredentials(m: MtlsMaterial): grpc.ServerCredentials {
  return grpc.ServerCredentials.createSsl(m.ca, [{ cert_chain: m.cert, private_key: m.key }], true);
}

/** Channel credentials that present this process's certificate and trust only the CA. */
export function mtlsChannelCredentials(m: MtlsMaterial): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(m.ca, m.key, m.cert);
}
