import { describe, expect, it } from 'vitest';
import { parseStackSettings, passThroughEnv } from './stack-settings';

describe('stack settings', () => {
  it('treats unset and empty DATABASE_URL / NATS_URL alike: the stack then brings its own servers', () => {
    for (const env of [{}, { DATABASE_URL: '', NATS_URL: '' }]) {
      const settings = parseStackSettings(env);
      expect(settings.DATABASE_URL).toBeUndefined();
      expect(settings.NATS_URL).toBeUndefined();
    }
    const external = parseStackSettings({ DATABASE_URL: 'postgres://u@db.internal:5432/coffer', NATS_URL: 'nats://nats.internal:4222' });
    expect(external.DATABASE_URL).toBe('postgres://u@db.internal:5432/coffer');
    expect(external.NATS_URL).toBe('nats://nats.internal:4222');
  });

  it('lists every bad variable at once, without its value', () => {
    let message = '';
    try {
      parseStackSettings({ DATABASE_URL: 'not a url', NATS_URL: 'http://nats.internal:4222', LOG_LEVEL: 'loud' });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/DATABASE_URL/);
    expect(message).toMatch(/NATS_URL/);
    expect(message).toMatch(/LOG_LEVEL/);
    expect(message).not.toContain('not a url');
  });

  it('hands OTEL_* and LOG_LEVEL on to the services, and nothing else from the environment', () => {
    const env = {
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4317',
      OTEL_SERVICE_NAME: 'coffer-dev',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=dev',
      LOG_LEVEL: 'debug',
      AWS_SECRET_ACCESS_KEY: 'not-for-services',
      DATABASE_URL: 'postgres://u:p@h/db',
      HOME: '/root',
    };
    expect(passThroughEnv(env)).toEqual({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4317',
      OTEL_SERVICE_NAME: 'coffer-dev',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=dev',
      LOG_LEVEL: 'debug',
    });
    expect(parseStackSettings(env).serviceEnv).toEqual(passThroughEnv(env));
  });
});
