// The CRM's live feed (GET /v1/live, vpbx_crm/live/messages.py): message shapes and the
// pure decisions the workspace takes on them (tested in live.test.ts).

export interface PopContact {
  id: string;
  name: string;
  category: string;
  vip: boolean;
  owner_user_id: string | null;
  owner_name: string;
  company_id?: string | null;
  company_name?: string;
  deals?: { id: string; title: string; stage: string }[];
}

export interface ScreenPopMessage {
  type: "screen-pop";
  call_id: string;
  caller: string;
  number: string;
  label: string;
  direction: string;
  offered: string[];
  at_ms: number;
  sent_ms: number;
  contact: PopContact | null;
}

export interface CardMessage {
  type: "card";
  call_id: string;
  contact: PopContact;
}

export interface CallMessage {
  type: "call";
  event: string;
  call_id: string;
  caller: string;
  callee: string;
  number: string;
  direction: string;
  end_reason: string;
  answered_by: string;
  answered_by_user_id: string | null;
  at_ms: number;
  sent_ms: number;
  contact: PopContact | null;
}

export type AgentActivity = "idle" | "ringing" | "talking" | "wrap-up";

export interface AgentRow {
  user_id: string;
  name: string;
  extension: string;
  presence: string;
  state: AgentActivity;
  call_id: string;
  since_ms: number;
  until_ms: number;
}

export interface AgentsMessage {
  type: "agents";
  agents: AgentRow[];
}

/** A call in progress on the supervisor's board (vpbx_crm/live/messages.py ``call_row``). */
export type BoardCallState = "routing" | "queued" | "ringing" | "talking";

export interface BoardCallRow {
  call_id: string;
  state: BoardCallState;
  since_ms: number;
  started_ms: number;
  direction: string;
  caller: string;
  callee: string;
  contact: PopContact | null;
  number: string;
  label: string;
  city: string;
  node: string;
  /** The group whose queue it waits in ("" none), since ``queued_ms`` (its place). */
  queue: string;
  queued_ms: number;
  ringing: string[];
  answered_by: string;
  answered_by_name: string;
  /** Known only from Redis (a queue's keys, the agents' talking set): caller and number
   * not known yet. */
  partial: boolean;
}

export interface BoardMessage {
  type: "board";
  at_ms: number;
  calls: BoardCallRow[];
}

export interface BoardCallMessage {
  type: "board-call";
  call: BoardCallRow;
}

export interface BoardCallEndedMessage {
  type: "board-call-ended";
  call_id: string;
  at_ms: number;
}

export interface HelloMessage {
  type: "hello";
  tenant: string;
  user_id: string | null;
  name: string;
  role: string | null;
  extension: string | null;
  supervisor: boolean;
  heartbeat_s: number;
}

export type LiveMessage =
  | ScreenPopMessage
  | CardMessage
  | CallMessage
  | AgentsMessage
  | BoardMessage
  | BoardCallMessage
  | BoardCallEndedMessage
  | HelloMessage
  | { type: "ping" }
  | { type: "pong" };

const TYPES = new Set([
  "screen-pop",
  "card",
  "call",
  "agents",
  "board",
  "board-call",
  "board-call-ended",
  "hello",
  "ping",
  "pong",
]);

/** The message in a frame; null for anything else (a newer server's type, garbage). */
export function parseMessage(text: unknown): LiveMessage | null {
  if (typeof text !== "string") return null;
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "object" && value !== null && "type" in value) {
      const kind = (value as { type: unknown }).type;
      if (typeof kind === "string" && TYPES.has(kind)) return value as LiveMessage;
    }
  } catch {
    return null;
  }
  return null;
}

/** Close codes after which reconnecting cannot help until the person logs in again. */
export const FATAL_CLOSE_CODES = new Set([4401, 4403]);

/** Milliseconds before reconnect attempt ``attempt`` (0-based): 0.5 s doubling to 30 s,
 * with up to 20 % jitter so a restarted CRM is not hit by every browser at once. */
export function reconnectDelay(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(30_000, 500 * 2 ** Math.min(attempt, 10));
  return Math.round(base * (1 + 0.2 * random()));
}

/** The live feed's address: the CRM's own host, ws: or wss: as the page's scheme. */
export function liveUrl(location: { protocol: string; host: string }, path: string): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

/** The name of the colleague whose client this is, or null when it is nobody else's. */
export function otherOwner(
  contact: Pick<PopContact, "owner_user_id" | "owner_name"> | null | undefined,
  me: string | null | undefined,
): string | null {
  if (!contact || !contact.owner_user_id || contact.owner_user_id === me) return null;
  return contact.owner_name || contact.owner_user_id.slice(0, 8);
}

/** A card message fills in the pop of its call. */
export function mergeCard(pop: ScreenPopMessage, card: CardMessage): ScreenPopMessage {
  if (pop.call_id !== card.call_id) return pop;
  return { ...pop, contact: { ...(pop.contact ?? {}), ...card.contact } };
}

/** After this call ended, does the person go to its after-call form? Only a call they
 * answered, or placed from their extension (click-to-call, the softphone) and talked on. */
export function afterCallFor(
  message: CallMessage,
  me: string | null | undefined,
  myExtension: string | null | undefined,
): boolean {
  if (message.event !== "call.ended" || message.end_reason !== "completed") return false;
  if (me && message.answered_by_user_id === me) return true;
  return !!myExtension && message.direction === "outbound" && message.caller === myExtension;
}

/** Seconds of wrap-up left at ``now`` (ms), 0 when none. */
export function wrapUpLeft(endedAtMs: number, wrapUpS: number, nowMs: number): number {
  if (wrapUpS <= 0) return 0;
  return Math.max(0, Math.ceil((endedAtMs + wrapUpS * 1000 - nowMs) / 1000));
}

/** The board's calls after a board message: a snapshot replaces them all, a call row
 * replaces the row of its call (or comes in), an end takes it out. Oldest first. Before
 * the first snapshot (``calls`` null) a delta starts the list: the snapshot that follows
 * replaces it anyway. */
export function applyBoard(
  calls: BoardCallRow[] | null,
  message: BoardMessage | BoardCallMessage | BoardCallEndedMessage,
): BoardCallRow[] {
  let next: BoardCallRow[];
  switch (message.type) {
    case "board":
      next = [...message.calls];
      break;
    case "board-call":
      next = [...(calls ?? []).filter((row) => row.call_id !== message.call.call_id), message.call];
      break;
    case "board-call-ended":
      next = (calls ?? []).filter((row) => row.call_id !== message.call_id);
      break;
  }
  return next.sort((a, b) => a.started_ms - b.started_ms || a.call_id.localeCompare(b.call_id));
}

export interface QueueWait {
  queue: string;
  /** Waiting callers in queue order (first = next offered); an offer may ring for one. */
  callers: BoardCallRow[];
  /** When the longest-waiting caller joined (ms). */
  longest_since_ms: number;
}

/** Callers waiting per queue, the queues by name; a queue with nobody waiting is not
 * listed (the board knows queues only through their callers). */
export function queueWaits(calls: readonly BoardCallRow[]): QueueWait[] {
  const byQueue = new Map<string, BoardCallRow[]>();
  for (const row of calls) {
    if (!row.queue || row.state === "talking") continue;
    const list = byQueue.get(row.queue) ?? [];
    list.push(row);
    byQueue.set(row.queue, list);
  }
  return [...byQueue.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([queue, callers]) => {
      const ordered = [...callers].sort(
        (a, b) => a.queued_ms - b.queued_ms || a.call_id.localeCompare(b.call_id),
      );
      return { queue, callers: ordered, longest_since_ms: ordered[0]?.queued_ms ?? 0 };
    });
}

/** Whole seconds from ``sinceMs`` to ``nowMs`` (never negative: clocks differ a little). */
export function elapsedS(sinceMs: number, nowMs: number): number {
  if (sinceMs <= 0) return 0;
  return Math.max(0, Math.floor((nowMs - sinceMs) / 1000));
}
