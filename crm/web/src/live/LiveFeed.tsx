// The live feed from the CRM (GET /v1/live): one WebSocket per tab while logged in, the
// token in the first message, pings answered, reconnected with backoff. It holds the
// screen pops of calls ringing this person, the board for supervisors, and takes the
// person to the after-call form when a call they answered ends.
import { createContext, useContext, useEffect, useMemo, useRef, useState } from "react";
import type { ReactNode } from "react";
import { useNavigate } from "react-router-dom";
import { useSession, useWorkspace } from "../auth/Workspace";
import {
  FATAL_CLOSE_CODES,
  afterCallFor,
  applyBoard,
  liveUrl,
  mergeCard,
  parseMessage,
  reconnectDelay,
  type AgentRow,
  type BoardCallRow,
  type CallMessage,
  type ScreenPopMessage,
} from "./protocol";

export type LinkState = "connecting" | "open" | "closed" | "refused";

export interface Live {
  link: LinkState;
  /** Calls about to ring (or ringing) this person, newest first. */
  pops: ScreenPopMessage[];
  dismiss(callId: string): void;
  /** Supervisors: the tenant's agents with presence and state. */
  agents: AgentRow[] | null;
  /** Supervisors: the tenant's calls in progress in every city, oldest first. */
  calls: BoardCallRow[] | null;
  /** The server's clock minus this browser's (ms), from the last board snapshot: the
   * board's times are the nodes', its timers run on this browser's clock. */
  skewMs: number;
  /** The last call of this person that ended, for the wrap-up countdown. */
  lastEnded: CallMessage | null;
  extension: string | null;
}

interface PopRecord {
  call_id: string;
  at_ms: number;
  sent_ms: number;
  received_ms: number;
  shown_ms?: number;
}

declare global {
  interface Window {
    /** For the browser tests: when each screen pop arrived and was shown (epoch ms). */
    __vpbx?: { pops: PopRecord[] };
  }
}

export function recordPop(callId: string, field: "received_ms" | "shown_ms", at: number): void {
  const store = (window.__vpbx ??= { pops: [] });
  let record = store.pops.find((pop) => pop.call_id === callId);
  if (!record) {
    record = { call_id: callId, at_ms: 0, sent_ms: 0, received_ms: 0 };
    store.pops.push(record);
  }
  record[field] = at;
}

const LiveContext = createContext<Live | null>(null);
const MAX_POPS = 5;

export function LiveProvider({ children }: { children: ReactNode }) {
  const { config } = useWorkspace();
  const { token, me } = useSession();
  const navigate = useNavigate();
  const [link, setLink] = useState<LinkState>("connecting");
  const [pops, setPops] = useState<ScreenPopMessage[]>([]);
  const [agents, setAgents] = useState<AgentRow[] | null>(null);
  const [calls, setCalls] = useState<BoardCallRow[] | null>(null);
  const [skewMs, setSkewMs] = useState(0);
  const [lastEnded, setLastEnded] = useState<CallMessage | null>(null);
  const [extension, setExtension] = useState<string | null>(null);
  const navigateRef = useRef(navigate);
  navigateRef.current = navigate;

  useEffect(() => {
    let socket: WebSocket | null = null;
    let attempt = 0;
    let timer: number | null = null;
    let stopped = false;
    let myExtension: string | null = null;

    const connect = () => {
      setLink("connecting");
      const ws = new WebSocket(liveUrl(window.location, config.live_path));
      socket = ws;
      ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token }));
      ws.onmessage = (frame) => {
        const message = parseMessage(frame.data);
        if (message === null) return;
        switch (message.type) {
          case "hello":
            attempt = 0;
            myExtension = message.extension;
            setExtension(message.extension);
            setLink("open");
            break;
          case "ping":
            ws.send('{"type":"pong"}');
            break;
          case "screen-pop": {
            const received = Date.now();
            recordPop(message.call_id, "received_ms", received);
            const record = window.__vpbx?.pops.find((pop) => pop.call_id === message.call_id);
            if (record) Object.assign(record, { at_ms: message.at_ms, sent_ms: message.sent_ms });
            setPops((list) =>
              [message, ...list.filter((pop) => pop.call_id !== message.call_id)].slice(
                0,
                MAX_POPS,
              ),
            );
            break;
          }
          case "card":
            setPops((list) => list.map((pop) => mergeCard(pop, message)));
            break;
          case "agents":
            setAgents(message.agents);
            break;
          case "board":
            setSkewMs(message.at_ms - Date.now());
            setCalls((list) => applyBoard(list, message));
            break;
          case "board-call":
          case "board-call-ended":
            setCalls((list) => applyBoard(list, message));
            break;
          case "call":
            if (message.event === "call.answered" && message.answered_by_user_id !== me.user_id) {
              // Somebody else took it: the pop goes.
              setPops((list) => list.filter((pop) => pop.call_id !== message.call_id));
            }
            if (message.event === "call.ended" || message.event === "call.refused") {
              setPops((list) => list.filter((pop) => pop.call_id !== message.call_id));
              if (afterCallFor(message, me.user_id, myExtension)) {
                setLastEnded(message);
                navigateRef.current(`/after-call/${encodeURIComponent(message.call_id)}`);
              }
            }
            break;
          default:
            break;
        }
      };
      ws.onclose = (event) => {
        if (socket === ws) socket = null;
        if (stopped) return;
        if (FATAL_CLOSE_CODES.has(event.code)) {
          setLink("refused");
          return;
        }
        setLink("closed");
        timer = window.setTimeout(connect, reconnectDelay(attempt++));
      };
    };
    connect();
    return () => {
      stopped = true;
      if (timer !== null) window.clearTimeout(timer);
      socket?.close(1000);
    };
  }, [config.live_path, token, me.user_id]);

  // The feed's state on the page, for people's tools and the browser tests.
  useEffect(() => {
    document.body.dataset.live = link;
  }, [link]);

  const value = useMemo<Live>(
    () => ({
      link,
      pops,
      dismiss: (callId: string) => setPops((list) => list.filter((pop) => pop.call_id !== callId)),
      agents,
      calls,
      skewMs,
      lastEnded,
      extension,
    }),
    [link, pops, agents, calls, skewMs, lastEnded, extension],
  );
  return <LiveContext.Provider value={value}>{children}</LiveContext.Provider>;
}

export function useLive(): Live {
  const value = useContext(LiveContext);
  if (value === null) throw new Error("useLive outside LiveProvider");
  return value;
}
