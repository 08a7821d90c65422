// The image's HEALTHCHECK: grpc.health.v1.Health/Check on this container's own service, over the
// loopback, with the service's own client certificate when mutual TLS is on. Exit 0 when SERVING.
// The edge, an HTTP server, is asked GET /healthz on the port of EDGE_HTTP_ADDRESS instead (200: healthy).
//   node healthcheck.mjs [host:port]   (default: 127.0.0.1 and the port of <APP>_GRPC_ADDRESS)
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import healthCheck from 'grpc-health-check';

const bindings = {
  auth: ['AUTH_GRPC_ADDRESS', '127.0.0.1:50051'],
  secrets: ['SECRETS_GRPC_ADDRESS', '127.0.0.1:50053'],
  config: ['CONFIG_GRPC_ADDRESS', '127.0.0.1:50052'],
  'sync-worker': ['SYNC_WORKER_GRPC_ADDRESS', '127.0.0.1:50054'],
  edge: ['EDGE_HTTP_ADDRESS', '127.0.0.1:8080'],
};

function target() {
  if (process.argv[2]) return process.argv[2];
  const binding = bindings[process.env.APP ?? ''];
  if (!binding) throw new Error(`APP must be one of ${Object.keys(bindings).join(', ')}`);
  const bound = process.env[binding[0]] || binding[1];
  return `127.0.0.1:${bound.slice(bound.lastIndexOf(':') + 1)}`;
}

function credentials() {
  const { COFFER_TLS_CA_FILE: ca, COFFER_TLS_CERT_FILE: cert, COFFER_TLS_KEY_FILE: key } = process.env;
  if (!ca || !cert || !key) return grpc.credentials.createInsecure();
  // The chain is verified; the host name is not, since the probe dials 127.0.0.1 whatever the certificate names.
  return grpc.credentials.createSsl(readFileSync(ca), readFileSync(key), readFileSync(cert), { checkServerIdentity: () => undefined });
}

async function checkHttp(address) {
  try {
    const res = await fetch(`http://${address}/healthz`, { signal: AbortSignal.timeout(3_000) });
    console.log(`${address}: HTTP ${res.status}`);
    process.exit(res.ok ? 0 : 1);
  } catch (err) {
    console.error(`${address}: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}

try {
  if (process.env.APP === 'edge') await checkHttp(target());
  const definition = protoLoader.loadSync(healthCheck.protoPath, { keepCase: true, enums: String, defaults: true });
  const Health = grpc.loadPackageDefinition(definition).grpc.health.v1.Health;
  const address = target();
  const client = new Health(address, credentials());
  client.Check({ service: '' }, { deadline: Date.now() + 3_000 }, (err, res) => {
    client.close();
    if (err) {
      console.error(`${address}: ${grpc.status[err.code] ?? err.code} ${err.details ?? ''}`.trim());
      process.exit(1);
    }
    console.log(`${address}: ${res.status}`);
    process.exit(res.status === 'SERVING' ? 0 : 1);
  });
} catch (err) {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
}
