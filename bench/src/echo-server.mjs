// The raw baseline: a grpc-js unary echo server in plain node (no Coffer code, no TypeScript loader),
// also the "plain node" process whose idle memory and start-up time the services are compared with.
// Prints {"event":"listening","port":N} once bound on 127.0.0.1.
import * as grpc from '@grpc/grpc-js';

const same = (b) => b;
/** One unary method that answers the request's bytes. */
export const echoService = {
  echo: {
    path: '/bench.Echo/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: same,
    requestDeserialize: same,
    responseSerialize: same,
    responseDeserialize: same,
  },
};

if (import.meta.url === `file://${process.argv[1]}`) {
  const server = new grpc.Server();
  server.addService(echoService, { echo: (call, callback) => callback(null, call.request) });
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) throw err;
    process.stdout.write(`${JSON.stringify({ event: 'listening', port })}\n`);
  });
  process.once('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
}
