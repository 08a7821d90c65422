import { headers as natsHeaders, type MsgHdrs } from '@nats-io/nats-core';
import { describe, expect, it } from 'vitest';
import { isCofferError, type MessagingNamespace } from '@coffer/contracts';
import { decodeCloudEvent, integrationEventMessage } from './cloud-event';

const ns: MessagingNamespace = { subjectRoot: 'coffer', streamPrefix: 'COFFER' };
const written = {
  coordinate: 'coffer_workspace_w1_secret_s1_v2',
  baseCoordinate: 'coffer_workspace_w1_secret_s1',
  version: 2,
  workspaceId: 'w1',
  actor: 'config',
  occurredAt: '2025-01-02T03:04:05.000Z',
  kekVersion: 1,
};

function toHeaders(record: Record<string, string>): MsgHdrs {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(record)) h.set(k, v);
  return h;
}

const encoder = new TextEncoder();

describe('integrationEventMessage', () => {
  it('builds CloudEvents 1.0 binary-mode headers and a proto3 JSON body', () => {
    const m = integrationEventMessage(ns, 'SecretVersionWritten', written, {
      eventId: 'e-1',
      source: 'coffer/secrets',
      subject: written.coordinate,
      time: new Date('2025-01-02T03:04:05.678Z'),
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    });
    expect(m.eventId).toBe('e-1');
    expect(m.subject).toBe('coffer.secrets.secret.version_written');
    expect(m.headers).toEqual({
      'ce-specversion': '1.0',
      'ce-id': 'e-1',
      'ce-type': 'coffer.secrets.v1.SecretVersionWritten',
      'ce-source': 'coffer/secrets',
      'ce-subject': written.coordinate,
      'ce-time': '2025-01-02T03:04:05.678Z',
      'content-type': 'application/json',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    });
    expect(JSON.parse(m.body)).toEqual(written);
  });

  it('leaves out ce-subject and traceparent when not given', () => {
    const m = integrationEventMessage(ns, 'ServiceIdentityRegistered', { clientId: 'c', occurredAt: '2025-01-01T00:00:00Z' }, {
      eventId: 'e-2',
      source: 'coffer/auth',
      time: new Date(0),
    });
    expect(m.headers['ce-subject']).toBeUndefined();
    expect(m.headers.traceparent).toBeUndefined();
    expect(m.subject).toBe('coffer.auth.service_identity.registered');
  });
});

describe('decodeCloudEvent', () => {
  it('reverses integrationEventMessage', () => {
    const m = integrationEventMessage(ns, 'SecretVersionWritten', written, {
      eventId: 'e-1',
      source: 'coffer/secrets',
      subject: written.coordinate,
      time: new Date('2025-01-02T03:04:05.678Z'),
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    });
    const event = decodeCloudEvent(toHeaders(m.headers), encoder.encode(m.body));
    expect(event).toEqual({
      id: 'e-1',
      type: 'coffer.secrets.v1.SecretVersionWritten',
      source: 'coffer/secrets',
      subject: written.coordinate,
      time: '2025-01-02T03:04:05.678Z',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      name: 'SecretVersionWritten',
      data: written,
    });
  });

  it('runs known events through their codec (defaults for missing proto3 fields)', () => {
    const m = integrationEventMessage(ns, 'SyncRequested', { jobId: 'j', connectionId: 'c', workspaceId: 'w', occurredAt: '' }, {
      eventId: 'e-3',
      source: 'coffer/config',
      time: new Date(0),
    });
    const event = decodeCloudEvent(toHeaders(m.headers), encoder.encode('{"jobId":"j"}'));
    expect(event.name).toBe('SyncRequested');
    expect(event.data).toEqual({ jobId: 'j', connectionId: '', workspaceId: '', occurredAt: '' });
  });

  it('keeps the parsed JSON of an unknown type and leaves name unset', () => {
    const h = toHeaders({
      'ce-specversion': '1.0',
      'ce-id': 'x',
      'ce-type': 'com.example.Other',
      'ce-source': 'elsewhere',
      'ce-time': '2025-01-01T00:00:00Z',
      'content-type': 'application/json',
    });
    const event = decodeCloudEvent(h, encoder.encode('{"a":[1,2]}'));
    expect(event.name).toBeUndefined();
    expect(event.data).toEqual({ a: [1, 2] });
  });

  it('rejects messages that are not CloudEvents without quoting their content', () => {
    const canary = 'CANARY-value-9f3a';
    const base = {
      'ce-specversion': '1.0',
      'ce-id': 'x',
      'ce-type': 'coffer.secrets.v1.SecretVersionWritten',
      'ce-source': 's',
      'ce-time': '2025-01-01T00:00:00Z',
    };
    const cases: Array<[MsgHdrs | undefined, string]> = [
      [undefined, '{}'],
      [toHeaders({ ...base, 'ce-specversion': '0.3' }), '{}'],
      [toHeaders({ ...base, 'ce-id': '' }), '{}'],
      [toHeaders({ ...base, 'content-type': 'text/plain' }), '{}'],
      [toHeaders(base), `not json ${canary}`],
    ];
    for (const [h, body] of cases) {
      let caught: unknown;
      try {
        decodeCloudEvent(h, encoder.encode(body));
      } catch (err) {
        caught = err;
      }
      expect(isCofferError(caught) && caught.code).toBe('invalid_argument');
      expect(JSON.stringify({ m: (caught as Error).message, d: (caught as { details: unknown }).details })).not.toContain(canary);
    }
  });
});
