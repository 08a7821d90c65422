// The parts of oidc-provider (which ships no types) the OAuth tests use.
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  interface StoredToken {
    jti: string;
    grantId?: string;
    destroy(): Promise<void>;
  }
  interface Ctx {
    oidc: { params?: Record<string, unknown>; entities: { RefreshToken?: { grantId?: string } } };
  }

  export default class Provider {
    constructor(issuer: string, configuration: Record<string, unknown>);
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    on(event: 'grant.success', listener: (ctx: Ctx) => void): this;
    on(event: 'grant.error', listener: (ctx: Ctx, err: { error?: string }) => void): this;
    on(event: 'access_token.saved' | 'refresh_token.saved' | 'authorization_code.saved', listener: (token: StoredToken) => void): this;
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<{ uid: string; prompt: { name: string } }>;
    interactionFinished(req: IncomingMessage, res: ServerResponse, result: Record<string, unknown>, options?: { mergeWithLastSubmission?: boolean }): Promise<void>;
    Client: { find(id: string): Promise<unknown> };
    Grant: (new (init: { accountId: string; clientId: string }) => { addOIDCScope(scope: string): void; save(): Promise<string> }) & { find(id: string): Promise<unknown> };
    RefreshToken: (new (init: Record<string, unknown>) => { save(): Promise<string> }) & { find(value: string): Promise<StoredToken | undefined> };
    AccessToken: { find(value: string): Promise<StoredToken | undefined> };
  }
}
