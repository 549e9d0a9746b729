// The typed API clients: the CRM (same origin) and the control API (login, recordings).
// Types come from src/api/generated/, made by scripts/openapi.py from the services' own
// OpenAPI documents; a new route appears here by regenerating.
import createClient, { type Client, type Middleware } from "openapi-fetch";
import type { paths as ControlPaths } from "./generated/control";
import type { paths as CrmPaths } from "./generated/crm";

export type CrmClient = Client<CrmPaths>;
export type ControlClient = Client<ControlPaths>;

export interface Credentials {
  /** The bearer token of the logged-in person, or null. */
  token(): string | null;
  /** Called when a request made with a token is refused as unauthenticated (expired). */
  expired(): void;
}

/** Adds the bearer token; a 401 to a request that carried one ends the session. */
export function bearer(credentials: Credentials): Middleware {
  return {
    onRequest({ request }) {
      const token = credentials.token();
      if (token !== null && !request.headers.has("Authorization")) {
        request.headers.set("Authorization", `Bearer ${token}`);
      }
      return request;
    },
    onResponse({ request, response }) {
      if (response.status === 401 && request.headers.has("Authorization")) {
        credentials.expired();
      }
      return response;
    },
  };
}

export function crmClient(credentials: Credentials | null): CrmClient {
  const client = createClient<CrmPaths>({ baseUrl: window.location.origin });
  if (credentials !== null) client.use(bearer(credentials));
  return client;
}

export function controlClient(baseUrl: string, credentials: Credentials | null): ControlClient {
  const client = createClient<ControlPaths>({ baseUrl });
  if (credentials !== null) client.use(bearer(credentials));
  return client;
}
