// The logged-in person's session, kept in sessionStorage: it lives as long as the tab and
// is never shared with other tabs or kept after the browser closes.
import type { WhoAmI } from "../api/types";

export const SESSION_KEY = "vpbx.session";

export interface StoredSession {
  token: string;
  /** Epoch milliseconds after which the token is refused. */
  expiresAt: number;
  me: WhoAmI;
}

export function readSession(storage: Storage, now: number = Date.now()): StoredSession | null {
  let raw: string | null;
  try {
    raw = storage.getItem(SESSION_KEY);
  } catch {
    return null;
  }
  if (raw === null) return null;
  try {
    const parsed = JSON.parse(raw) as Partial<StoredSession>;
    if (
      typeof parsed.token === "string" &&
      typeof parsed.expiresAt === "number" &&
      typeof parsed.me === "object" &&
      parsed.me !== null &&
      parsed.expiresAt > now
    ) {
      return parsed as StoredSession;
    }
  } catch {
    // unreadable: treated as logged out
  }
  storage.removeItem(SESSION_KEY);
  return null;
}

export function writeSession(storage: Storage, session: StoredSession | null): void {
  try {
    if (session === null) storage.removeItem(SESSION_KEY);
    else storage.setItem(SESSION_KEY, JSON.stringify(session));
  } catch {
    // storage refused: the session lasts until the page is reloaded
  }
}

/** Supervisors and tenant admins see everybody's work. */
export function isManager(me: WhoAmI | null | undefined): boolean {
  return me?.role === "supervisor" || me?.role === "tenant-admin";
}
