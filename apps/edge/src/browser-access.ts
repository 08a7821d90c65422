import type { Principal } from '@coffer/tokens';

/** Paths the connect widget calls: a browser's preflight for them is answered for any origin (see {@link preflightAllowed}). */
export const WIDGET_PATHS: ReadonlySet<string> = new Set([
  '/coffer.config.v1.ConfigService/GetConnectorDefinition',
  '/coffer.config.v1.ConfigService/ListConnectorDefinitions',
  '/coffer.config.v1.ConfigService/GetActor',
  '/coffer.config.v1.ConfigService/CreateActor',
  '/coffer.config.v1.ConfigService/UpdateActor',
  '/api/v1/integrations/connectors',
]);

/** Whether a call carrying `Origin: origin` may go on, and why not. */
export type BrowserAccess = { allowed: true } | { allowed: false; reason: string };

/**
 * A call from a browser origin: a widget token only from exactly the origin it is bound to; any other
 * token, or none, only from an origin of the operator's allow-list.
 */
export function callAllowed(origin: string, principal: Principal | undefined, allowList: readonly string[]): BrowserAccess {
  if (principal?.kind === 'widget') {
    return principal.origin === origin ? { allowed: true } : { allowed: false, reason: 'this widget token is bound to another origin' };
  }
  if (allowList.includes(origin)) return { allowed: true };
  return { allowed: false, reason: principal ? `${principal.kind} tokens are not allowed from this origin` : 'this origin is not allowed' };
}

/**
 * A preflight. When it carries a token (a client that sends one) it is judged like the call. A
 * browser's preflight never carries one: it passes for the operator's origins, and for the widget's
 * paths from any origin, since the call that follows is then judged by its token before anything is
 * forwarded, and the browser lets the page read no answer that lacks the allow-origin header.
 */
export function preflightAllowed(origin: string, path: string, principal: Principal | undefined, hasToken: boolean, allowList: readonly string[]): BrowserAccess {
  if (hasToken) return callAllowed(origin, principal, allowList);
  if (allowList.includes(origin) || WIDGET_PATHS.has(path)) return { allowed: true };
  return { allowed: false, reason: 'this origin is not allowed' };
}
