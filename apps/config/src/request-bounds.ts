import { CofferError } from '@coffer/contracts';

/** Request fields that hold one of config's ids: always a UUID (or empty where the field is optional). */
const UUID_FIELDS: Readonly<Record<string, string>> = {
  workspaceId: 'workspace_id',
  definitionId: 'definition_id',
  actorId: 'actor_id',
  connectionId: 'connection_id',
  sourceId: 'source_id',
  destinationId: 'destination_id',
  webhookId: 'webhook_id',
};

/** Request fields that are short text, with their most characters. */
const TEXT_FIELDS: Readonly<Record<string, { field: string; max: number }>> = {
  name: { field: 'name', max: 200 },
  organizationId: { field: 'organization_id', max: 200 },
  externalUserId: { field: 'external_user_id', max: 200 },
  connector: { field: 'connector', max: 250 },
  field: { field: 'field', max: 500 },
  redirectUri: { field: 'redirect_uri', max: 2048 },
};

const MAX_PAGE_TOKEN = 200;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The most characters of one key of a JSON object a caller sends (config, spec). */
export const MAX_JSON_KEY_CHARS = 200;

function refuse(field: string, reason: string): never {
  throw new CofferError('invalid_argument', `${field} ${reason}`, [{ field, reason }]);
}

/**
 * Refuses, before any lookup, a request whose ids are not UUIDs or whose short text fields are too
 * long. Errors name the field and never quote its value: an echoed large value would not fit a status.
 */
export function checkRequestBounds(request: unknown): void {
  if (request === null || typeof request !== 'object') return;
  for (const [key, value] of Object.entries(request as Record<string, unknown>)) {
    if (typeof value === 'string') {
      const id = UUID_FIELDS[key];
      if (id !== undefined && value !== '' && !UUID.test(value)) refuse(id, 'must be a UUID');
      const text = TEXT_FIELDS[key];
      if (text !== undefined && value.length > text.max) refuse(text.field, `must be at most ${text.max} characters`);
    } else if (key === 'page' && value !== null && typeof value === 'object') {
      const token = (value as { pageToken?: unknown }).pageToken;
      if (typeof token === 'string' && token.length > MAX_PAGE_TOKEN) refuse('page.page_token', 'is not a token this service issued');
    }
  }
}

/** Refuses a JSON value holding an object key longer than {@link MAX_JSON_KEY_CHARS}, without quoting it. */
export function checkJsonKeys(value: unknown, field: string): void {
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const v = pending.pop();
    if (v === null || typeof v !== 'object') continue;
    if (Array.isArray(v)) {
      for (const item of v) pending.push(item);
      continue;
    }
    for (const [key, child] of Object.entries(v)) {
      if (key.length > MAX_JSON_KEY_CHARS) refuse(field, `has an object key longer than ${MAX_JSON_KEY_CHARS} characters`);
      pending.push(child);
    }
  }
}

/** Runs {@link checkRequestBounds} on every request before its handler. */
export function withRequestBounds<H extends object>(handlers: H): H {
  const bounded: Record<string, unknown> = {};
  for (const [method, spec] of Object.entries(handlers as Record<string, { handler: (req: unknown, ctx: unknown) => Promise<unknown> }>)) {
    bounded[method] = {
      ...spec,
      handler: async (req: unknown, ctx: unknown) => {
        checkRequestBounds(req);
        return spec.handler(req, ctx);
      },
    };
  }
  return bounded as H;
}
