// Everything a page needs: the API clients, who is logged in, the tenant's people.
import {
  createContext,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useState,
} from "react";
import type { ReactNode } from "react";
import {
  controlClient,
  crmClient,
  type ControlClient,
  type Credentials,
  type CrmClient,
} from "../api/client";
import { ApiFailure, unwrap } from "../api/errors";
import type { DirectoryPerson, WorkspaceConfig } from "../api/types";
import { credentialsKey } from "../softphone/credentials";
import { readSession, writeSession, type StoredSession } from "./session";

export type LogoutReason = "expired" | null;

export interface Workspace {
  config: WorkspaceConfig;
  crm: CrmClient;
  control: ControlClient;
  session: StoredSession | null;
  /** Why the last session ended, if it was not the person's own choice. */
  ended: LogoutReason;
  login(email: string, password: string): Promise<void>;
  logout(reason?: LogoutReason): void;
  people: ReadonlyMap<string, DirectoryPerson>;
  personName(userId: string | null | undefined): string;
  /** "Olga (101)" for an extension of the tenant, else the extension itself. */
  extensionName(extension: string): string;
  /** A recording or voice message from the control API (``path`` as the CRM gives it). */
  controlAudio(path: string): Promise<Blob>;
}

const WorkspaceContext = createContext<Workspace | null>(null);

const PEOPLE_REFRESH_MS = 60_000;

export function WorkspaceProvider({
  config,
  children,
}: {
  config: WorkspaceConfig;
  children: ReactNode;
}) {
  const [session, setSession] = useState<StoredSession | null>(() =>
    readSession(window.sessionStorage),
  );
  const [ended, setEnded] = useState<LogoutReason>(null);
  const [people, setPeople] = useState<ReadonlyMap<string, DirectoryPerson>>(new Map());
  const tokenRef = useRef<string | null>(session?.token ?? null);

  const userIdRef = useRef<string | null>(session?.me.user_id ?? null);
  userIdRef.current = session?.me.user_id ?? null;

  const logout = useCallback((reason: LogoutReason = null) => {
    tokenRef.current = null;
    // Logging out on purpose leaves no way to register as this person on a shared
    // computer: the browser's SIP password goes (a new device is made at the next login).
    if (reason === null && userIdRef.current !== null) {
      window.localStorage.removeItem(credentialsKey(userIdRef.current));
    }
    writeSession(window.sessionStorage, null);
    setSession(null);
    setPeople(new Map());
    setEnded(reason);
  }, []);

  const credentials = useMemo<Credentials>(
    () => ({ token: () => tokenRef.current, expired: () => logout("expired") }),
    [logout],
  );
  const crm = useMemo(() => crmClient(credentials), [credentials]);
  const control = useMemo(
    () => controlClient(config.control_url, credentials),
    [config.control_url, credentials],
  );

  const login = useCallback(
    async (email: string, password: string) => {
      const anonymous = controlClient(config.control_url, null);
      const token = unwrap(
        await anonymous.POST("/v1/auth/login", { body: { email, password } }),
      );
      const me = unwrap(
        await anonymous.GET("/v1/auth/me", {
          headers: { Authorization: `Bearer ${token.access_token}` },
        }),
      );
      const next: StoredSession = {
        token: token.access_token,
        // A little early, so no request goes out with a token about to lapse.
        expiresAt: Date.now() + Math.max(0, token.expires_in - 5) * 1000,
        me,
      };
      tokenRef.current = next.token;
      writeSession(window.sessionStorage, next);
      setEnded(null);
      setSession(next);
    },
    [config.control_url],
  );

  // The token lapses at a known time: end the session then rather than on a failed call.
  useEffect(() => {
    if (session === null) return undefined;
    const timer = window.setTimeout(
      () => logout("expired"),
      Math.max(0, session.expiresAt - Date.now()),
    );
    return () => window.clearTimeout(timer);
  }, [session, logout]);

  // The tenant's people (owner and assignee names), kept fresh while logged in.
  useEffect(() => {
    if (session === null) return undefined;
    let stopped = false;
    const load = async () => {
      try {
        const found = unwrap(await crm.GET("/v1/directory/users"));
        if (!stopped) setPeople(new Map(found.items.map((person) => [person.id, person])));
      } catch {
        // names fall back to ids until the next refresh
      }
    };
    void load();
    const timer = window.setInterval(() => void load(), PEOPLE_REFRESH_MS);
    return () => {
      stopped = true;
      window.clearInterval(timer);
    };
  }, [session, crm]);

  const personName = useCallback(
    (userId: string | null | undefined) => {
      if (!userId) return "";
      const person = people.get(userId);
      if (!person) return userId.slice(0, 8);
      return person.extension ? `${person.name} (${person.extension})` : person.name;
    },
    [people],
  );

  const extensionName = useCallback(
    (extension: string) => {
      for (const person of people.values()) {
        if (person.extension === extension) return `${person.name} (${extension})`;
      }
      return extension;
    },
    [people],
  );

  const controlAudio = useCallback(
    async (path: string) => {
      // Only the control API's own paths get the token.
      if (!path.startsWith("/v1/")) throw new Error(`not a control API path: ${path}`);
      const headers: Record<string, string> = {};
      if (tokenRef.current) headers.Authorization = `Bearer ${tokenRef.current}`;
      const response = await fetch(`${config.control_url}${path}`, { headers });
      if (response.status === 401) logout("expired");
      if (!response.ok) {
        let body: unknown = null;
        try {
          body = await response.json();
        } catch {
          // not JSON: the status says enough
        }
        throw new ApiFailure(response.status, body);
      }
      return response.blob();
    },
    [config.control_url, logout],
  );

  const value = useMemo<Workspace>(
    () => ({
      config,
      crm,
      control,
      session,
      ended,
      login,
      logout,
      people,
      personName,
      extensionName,
      controlAudio,
    }),
    [
      config,
      crm,
      control,
      session,
      ended,
      login,
      logout,
      people,
      personName,
      extensionName,
      controlAudio,
    ],
  );
  return <WorkspaceContext.Provider value={value}>{children}</WorkspaceContext.Provider>;
}

export function useWorkspace(): Workspace {
  const value = useContext(WorkspaceContext);
  if (value === null) throw new Error("useWorkspace outside WorkspaceProvider");
  return value;
}

/** The logged-in session; only under a route that requires one. */
export function useSession(): StoredSession {
  const { session } = useWorkspace();
  if (session === null) throw new Error("useSession without a session");
  return session;
}
