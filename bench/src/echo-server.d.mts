import type { ServiceDefinition } from '@grpc/grpc-js';

/** The echo server's one unary method, `/bench.Echo/Echo`, over raw bytes. */
export declare const echoService: ServiceDefinition;
