/** The fixed id of the built-in webhook definition, registered by config at start-up. */
export const WEBHOOK_DEFINITION_ID = '00000000-0000-4000-8000-0000000000a1';

/**
 * The platform's webhook configuration: where to call, how to sign and authenticate. Its secrets
 * (signing secret, header values, the auth branch's token or password) are handled exactly like a
 * connector's: split out, masked on read, versioned, shredded when no longer referenced.
 */
export const WEBHOOK_SPEC = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'Webhook',
  type: 'object',
  required: ['url'],
  additionalProperties: false,
  properties: {
    url: { type: 'string', format: 'uri', pattern: '^https?://' },
    events: { type: 'array', items: { type: 'string', minLength: 1 } },
    signing_secret: { type: 'string', airbyte_secret: true, minLength: 16 },
    headers: {
      type: 'array',
      items: {
        type: 'object',
        required: ['name', 'value'],
        additionalProperties: false,
        properties: { name: { type: 'string', minLength: 1 }, value: { type: 'string', airbyte_secret: true } },
      },
    },
    auth: {
      oneOf: [
        { type: 'object', title: 'None', required: ['type'], properties: { type: { const: 'none' } } },
        { type: 'object', title: 'Bearer token', required: ['type', 'token'], properties: { type: { const: 'bearer' }, token: { type: 'string', airbyte_secret: true } } },
        {
          type: 'object',
          title: 'Basic',
          required: ['type', 'username', 'password'],
          properties: { type: { const: 'basic' }, username: { type: 'string' }, password: { type: 'string', airbyte_secret: true } },
        },
      ],
    },
  },
} as const;
