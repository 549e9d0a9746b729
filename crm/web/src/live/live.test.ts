import { describe, expect, it, vi } from "vitest";
import { afterPop, callerKey, popShown } from "./popGate";
import {
  browserDeviceName,
  dialTarget,
  readCredentials,
  writeCredentials,
} from "../softphone/credentials";
import {
  afterCallFor,
  applyBoard,
  elapsedS,
  liveUrl,
  mergeCard,
  otherOwner,
  parseMessage,
  queueWaits,
  reconnectDelay,
  wrapUpLeft,
  type BoardCallRow,
  type CallMessage,
  type ScreenPopMessage,
} from "./protocol";

class MemoryStorage implements Storage {
  private items = new Map<string, string>();
  get length() {
    return this.items.size;
  }
  clear() {
    this.items.clear();
  }
  getItem(key: string) {
    return this.items.get(key) ?? null;
  }
  key(index: number) {
    return [...this.items.keys()][index] ?? null;
  }
  removeItem(key: string) {
    this.items.delete(key);
  }
  setItem(key: string, value: string) {
    this.items.set(key, value);
  }
}

const POP: ScreenPopMessage = {
  type: "screen-pop",
  call_id: "c1",
  caller: "+79161234567",
  number: "+74950000001",
  label: "",
  direction: "inbound",
  offered: ["101"],
  at_ms: 1,
  sent_ms: 2,
  contact: null,
};

function ended(fields: Partial<CallMessage>): CallMessage {
  return {
    type: "call",
    event: "call.ended",
    call_id: "c1",
    caller: "+79161234567",
    callee: "101",
    number: "+74950000001",
    direction: "inbound",
    end_reason: "completed",
    answered_by: "101",
    answered_by_user_id: "olga",
    at_ms: 0,
    sent_ms: 0,
    contact: null,
    ...fields,
  };
}

describe("live feed messages", () => {
  it("reads known message types and refuses anything else", () => {
    expect(parseMessage('{"type":"ping"}')).toEqual({ type: "ping" });
    expect(parseMessage(JSON.stringify(POP))).toEqual(POP);
    expect(parseMessage('{"type":"brand-new"}')).toBeNull();
    expect(parseMessage("not json")).toBeNull();
    expect(parseMessage('"a string"')).toBeNull();
    expect(parseMessage(new ArrayBuffer(2))).toBeNull();
  });

  it("backs off from half a second to thirty, with jitter", () => {
    expect(reconnectDelay(0, () => 0)).toBe(500);
    expect(reconnectDelay(1, () => 0)).toBe(1000);
    expect(reconnectDelay(3, () => 1)).toBe(4800);
    expect(reconnectDelay(50, () => 0)).toBe(30_000);
  });

  it("uses wss on an https page", () => {
    expect(liveUrl({ protocol: "https:", host: "crm.example" }, "/v1/live")).toBe(
      "wss://crm.example/v1/live",
    );
    expect(liveUrl({ protocol: "http:", host: "127.0.0.1:8001" }, "/v1/live")).toBe(
      "ws://127.0.0.1:8001/v1/live",
    );
  });

  it("names the colleague whose client it is, never oneself", () => {
    expect(otherOwner({ owner_user_id: "petr", owner_name: "Petr" }, "olga")).toBe("Petr");
    expect(otherOwner({ owner_user_id: "olga", owner_name: "Olga" }, "olga")).toBeNull();
    expect(otherOwner({ owner_user_id: null, owner_name: "" }, "olga")).toBeNull();
    expect(otherOwner(null, "olga")).toBeNull();
  });

  it("fills a pop with its card only", () => {
    const card = {
      type: "card" as const,
      call_id: "c1",
      contact: {
        id: "x",
        name: "Ivan",
        category: "client",
        vip: false,
        owner_user_id: null,
        owner_name: "",
        company_name: "Romashka",
      },
    };
    expect(mergeCard(POP, card).contact?.company_name).toBe("Romashka");
    expect(mergeCard(POP, { ...card, call_id: "other" })).toBe(POP);
  });

  it("opens the after-call form for a call one answered or placed", () => {
    expect(afterCallFor(ended({}), "olga", "101")).toBe(true);
    expect(afterCallFor(ended({ answered_by_user_id: "petr" }), "olga", "101")).toBe(false);
    expect(afterCallFor(ended({ end_reason: "no-answer" }), "olga", "101")).toBe(false);
    expect(afterCallFor(ended({ event: "call.answered" }), "olga", "101")).toBe(false);
    const placed = ended({ direction: "outbound", caller: "101", answered_by_user_id: null });
    expect(afterCallFor(placed, "olga", "101")).toBe(true);
    expect(afterCallFor(placed, "olga", "102")).toBe(false);
  });

  it("counts the wrap-up down to zero", () => {
    expect(wrapUpLeft(10_000, 30, 10_000)).toBe(30);
    expect(wrapUpLeft(10_000, 30, 39_500)).toBe(1);
    expect(wrapUpLeft(10_000, 30, 40_000)).toBe(0);
    expect(wrapUpLeft(10_000, 0, 10_000)).toBe(0);
  });
});

describe("softphone", () => {
  it("keeps credentials per user and drops unreadable ones", () => {
    const storage = new MemoryStorage();
    const credentials = { deviceId: "d", username: "101-web", password: "p", domain: "acme" };
    writeCredentials(storage, "olga", credentials);
    expect(readCredentials(storage, "olga")).toEqual(credentials);
    expect(readCredentials(storage, "petr")).toBeNull();
    storage.setItem("vpbx.softphone.olga", '{"username": "101"}');
    expect(readCredentials(storage, "olga")).toBeNull();
    expect(storage.getItem("vpbx.softphone.olga")).toBeNull();
    writeCredentials(storage, "olga", credentials);
    writeCredentials(storage, "olga", null);
    expect(readCredentials(storage, "olga")).toBeNull();
  });

  it("dials digits, a leading plus, * and #", () => {
    expect(dialTarget(" +7 (916) 123-45-67 ")).toBe("+79161234567");
    expect(dialTarget("101")).toBe("101");
    expect(dialTarget("*72#")).toBe("*72#");
    expect(dialTarget("call me")).toBeNull();
  });

  it("names the browser's device", () => {
    const chromium =
      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
    expect(browserDeviceName(chromium)).toBe("Chromium on Linux");
    expect(browserDeviceName("Mozilla/5.0 (Windows NT 10.0) Gecko/20100101 Firefox/120.0")).toBe(
      "Firefox on Windows",
    );
    expect(browserDeviceName("curl/8")).toBe("Browser");
  });
});

describe("the ring waits for the card", () => {
  it("matches the caller in any written form", () => {
    expect(callerKey("+7 916 123-45-67")).toBe(callerKey("89161234567"));
    expect(callerKey("+79161234567")).toBe("9161234567");
  });

  it("rings at once when the card is already on screen", async () => {
    popShown("+79160000001", 1_000);
    let rung = false;
    await afterPop("89160000001", 10_000, 1_500).then(() => (rung = true));
    expect(rung).toBe(true);
  });

  it("rings when the card comes, not before", async () => {
    vi.useFakeTimers();
    try {
      let rung = false;
      const ring = afterPop("+79160000002", 250).then(() => (rung = true));
      await vi.advanceTimersByTimeAsync(100);
      expect(rung).toBe(false);
      popShown("+7 916 000-00-02");
      await ring;
      expect(rung).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });

  it("rings after the grace when no card comes", async () => {
    vi.useFakeTimers();
    try {
      let rung = false;
      const ring = afterPop("+79160000003", 250).then(() => (rung = true));
      await vi.advanceTimersByTimeAsync(200);
      expect(rung).toBe(false);
      await vi.advanceTimersByTimeAsync(60);
      await ring;
      expect(rung).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });
});

function row(fields: Partial<BoardCallRow> & { call_id: string }): BoardCallRow {
  return {
    state: "queued",
    since_ms: 1000,
    started_ms: 1000,
    direction: "inbound",
    caller: "+79161234567",
    callee: "",
    contact: null,
    number: "+74950000001",
    label: "",
    city: "msk",
    node: "node-msk",
    queue: "support",
    queued_ms: 1000,
    ringing: [],
    answered_by: "",
    answered_by_name: "",
    partial: false,
    ...fields,
  };
}

describe("the supervisor's board", () => {
  it("takes a snapshot, then rows that replace their call's, then ends", () => {
    const a = row({ call_id: "a", started_ms: 2000 });
    const b = row({ call_id: "b", started_ms: 1000 });
    let calls = applyBoard(null, { type: "board", at_ms: 5000, calls: [a, b] });
    expect(calls.map((call) => call.call_id)).toEqual(["b", "a"]);
    calls = applyBoard(calls, {
      type: "board-call",
      call: { ...a, state: "talking", answered_by: "101", queue: "" },
    });
    expect(calls.map((call) => [call.call_id, call.state])).toEqual([
      ["b", "queued"],
      ["a", "talking"],
    ]);
    calls = applyBoard(calls, { type: "board-call-ended", call_id: "b", at_ms: 6000 });
    expect(calls.map((call) => call.call_id)).toEqual(["a"]);
    // A delta before the first snapshot starts the list; the snapshot replaces it.
    expect(applyBoard(null, { type: "board-call", call: b })).toEqual([b]);
    expect(parseMessage('{"type":"board-call-ended","call_id":"b","at_ms":1}')).not.toBeNull();
  });

  it("lists each queue's waiting callers in their order, the longest wait first", () => {
    const waits = queueWaits([
      row({ call_id: "late", queued_ms: 9000 }),
      row({ call_id: "talks", queue: "", state: "talking" }),
      row({ call_id: "first", queued_ms: 3000, state: "ringing", ringing: ["101"] }),
      row({ call_id: "sales", queue: "sales", queued_ms: 5000 }),
    ]);
    expect(waits.map((wait) => [wait.queue, wait.callers.map((c) => c.call_id)])).toEqual([
      ["sales", ["sales"]],
      ["support", ["first", "late"]],
    ]);
    expect(waits[1]?.longest_since_ms).toBe(3000);
    expect(queueWaits([])).toEqual([]);
  });

  it("counts whole seconds and never below zero", () => {
    expect(elapsedS(1000, 62_999)).toBe(61);
    expect(elapsedS(5000, 4000)).toBe(0);
    expect(elapsedS(0, 4000)).toBe(0);
  });
});
