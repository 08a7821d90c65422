import type { CommandSpec } from './args';

/**
 * The organization, application and token commands (coffer.auth.v1.AuthService). Only a type is
 * imported from args.ts, which spreads these into its table, so neither module needs the other loaded first.
 */
export const authCommandSpecs: Record<string, CommandSpec> = {
  'orgs create': { args: ['name'], strings: ['request-id'], summary: 'create an organization (operator credentials); --request-id makes a retry answer the first result' },
  'apps create': {
    args: ['name'],
    strings: ['org', 'allowed-origins', 'request-id'],
    booleans: ['operator'],
    summary: "create an application in the logged-in application's organization, or with --operator in --org; prints its client secret, once; --allowed-origins is a comma-separated list of origins (scheme://host[:port]) widget tokens may be bound to",
  },
  'apps rotate-secret': { args: ['client-id'], booleans: ['operator'], summary: 'issue a new client secret (printed once); the previous one works until the time shown' },
  'apps disable': { args: ['client-id'], booleans: ['operator'], summary: 'refuse the application\'s credentials and revoke every token it holds' },
  'tokens application': { strings: ['client-id'], summary: 'print a new application token, issued with the same client credentials as `coffer login`' },
  'tokens scoped': {
    strings: ['workspace', 'end-user', 'role'],
    booleans: ['create-workspace'],
    summary: "print a token scoped to one workspace (--workspace) or one end user's (--end-user; --create-workspace makes it), issued with the login; --role editor (default) or reader",
  },
  'tokens widget': {
    strings: ['origin', 'workspace', 'end-user', 'role'],
    required: ['origin'],
    summary: 'print a widget token bound to --origin (one of the application\'s allowed origins), for a workspace or an end user as with tokens scoped',
  },
  'tokens revoke': {
    args: ['token-or-jti'],
    strings: ['expires-at'],
    booleans: ['operator'],
    summary: "revoke a token of the logged-in application's organization (or of any, with --operator); a jti alone needs operator credentials and --expires-at (RFC 3339)",
  },
};
