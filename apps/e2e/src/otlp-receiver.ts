import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A span as the receiver got it. */
export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  startMs: number;
  attributes: Record<string, unknown>;
}

/** A real OTLP/gRPC trace endpoint: what the services' exporters send, decoded from protobuf. */
export interface OtlpReceiver {
  endpoint: string;
  spans: ReceivedSpan[];
  close(): Promise<void>;
}

interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string;
  doubleValue?: number;
  bytesValue?: Buffer;
}

const protoFile = join(dirname(fileURLToPath(import.meta.url)), 'fixtures/otlp-receiver.proto');

/** Starts the receiver on 127.0.0.1 (any free port). Metrics exports are not served: only traces are read. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const definition = protoLoader.loadSync(protoFile, { longs: String, enums: Number, bytes: Buffer, defaults: true, oneofs: false });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as { opentelemetry: { proto: { collector: { trace: { v1: { TraceService: grpc.ServiceClientConstructor } } } } } };
  const spans: ReceivedSpan[] = [];
  const server = new grpc.Server();
  const valueOf = (v: AnyValue | undefined): unknown => v?.stringValue ?? v?.boolValue ?? v?.intValue ?? v?.doubleValue ?? v?.bytesValue?.toString('hex');
  const attrs = (list: Array<{ key: string; value?: AnyValue }>) => Object.fromEntries(list.map((kv) => [kv.key, valueOf(kv.value)]));
  server.addService(pkg.opentelemetry.proto.collector.trace.v1.TraceService.service, {
    Export: (call: grpc.ServerUnaryCall<any, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      for (const rs of call.request.resourceSpans ?? []) {
        const service = String(attrs(rs.resource?.attributes ?? [])['service.name'] ?? '');
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            spans.push({
              service,
              traceId: (s.traceId as Buffer).toString('hex'),
              spanId: (s.spanId as Buffer).toString('hex'),
              parentSpanId: (s.parentSpanId as Buffer).toString('hex'),
              name: s.name,
              kind: s.kind,
              startMs: Number(BigInt(s.startTimeUnixNano) / 1_000_000n),
              attributes: attrs(s.attributes ?? []),
            });
          }
        }
      }
      callback(null, {});
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}
