/** The vitest config every project uses: unit and integration tests side by side, one shared Postgres/NATS. */
export declare function projectConfig(options?: {
    testTimeout?: number;
}): import("vite").UserConfig;
