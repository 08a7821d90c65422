import { describe, expect, it } from 'vitest';
import { defaultNamespace, eventNameOfType, eventSubject, eventType, integrationEvents, streamName, streamSubjects, type IntegrationEventName } from './events';
import { errorCodes, CofferError, isCofferError } from './errors';

describe('integration event names', () => {
  it('maps every event to a subject inside its service stream and back from its type', () => {
    for (const name of Object.keys(integrationEvents) as IntegrationEventName[]) {
      const subject = eventSubject(defaultNamespace, name);
      const service = integrationEvents[name].service;
      expect(subject.startsWith(`coffer.${service}.`)).toBe(true);
      expect(streamSubjects(defaultNamespace, service)).toEqual([`coffer.${service}.>`]);
      expect(eventNameOfType(eventType(name))).toBe(name);
    }
    expect(eventType('SecretVersionWritten')).toBe('coffer.secrets.v1.SecretVersionWritten');
    expect(streamName(defaultNamespace, 'secrets')).toBe('COFFER_SECRETS');
    expect(eventNameOfType('coffer.config.v1.SecretVersionWritten')).toBeUndefined();
  });

  it('has unique subjects', () => {
    const subjects = (Object.keys(integrationEvents) as IntegrationEventName[]).map((n) => eventSubject(defaultNamespace, n));
    expect(new Set(subjects).size).toBe(subjects.length);
  });
});

describe('CofferError', () => {
  it('carries a code from the closed set', () => {
    for (const code of errorCodes) {
      const err = new CofferError(code, 'm');
      expect(isCofferError(err)).toBe(true);
      expect(err.code).toBe(code);
    }
    expect(isCofferError(new Error('x'))).toBe(false);
  });
});
