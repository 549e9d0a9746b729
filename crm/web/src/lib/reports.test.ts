import { describe, expect, it } from "vitest";
import type { CallEntry } from "../api/types";
import { addDays, contactStats, exportName, keyText, localDay, presetPeriod } from "./reports";

function call(started_at: string, extra: Partial<CallEntry> = {}): CallEntry {
  return {
    call_id: started_at,
    contact_id: null,
    direction: "inbound",
    phone: "+79130000001",
    number: "+74950000001",
    label: "",
    status: "ended",
    end_reason: "completed",
    answered_by: "",
    answered_user_id: null,
    missed: false,
    started_at,
    answered_at: null,
    ended_at: started_at,
    talk_s: 0,
    recording_url: null,
    recording_ms: 0,
    voicemail_url: null,
    voicemail_ms: 0,
    ...extra,
  };
}

describe("report periods", () => {
  // 2026-03-31 22:30 UTC is already April 1st in Moscow (UTC+3).
  const now = new Date("2026-03-31T22:30:00Z");

  it("reads today in the chosen zone, not the browser's", () => {
    expect(localDay(now, "Europe/Moscow")).toBe("2026-04-01");
    expect(localDay(now, "UTC")).toBe("2026-03-31");
  });

  it("gives every preset as whole days with both ends included", () => {
    expect(presetPeriod("today", now, "Europe/Moscow")).toEqual({
      from: "2026-04-01",
      to: "2026-04-01",
    });
    expect(presetPeriod("week", now, "UTC")).toEqual({ from: "2026-03-25", to: "2026-03-31" });
    expect(presetPeriod("month30", now, "UTC")).toEqual({ from: "2026-03-02", to: "2026-03-31" });
    expect(presetPeriod("thisMonth", now, "Europe/Moscow")).toEqual({
      from: "2026-04-01",
      to: "2026-04-01",
    });
  });

  it("steps over month and year ends", () => {
    expect(addDays("2026-01-01", -1)).toBe("2025-12-31");
    expect(addDays("2024-02-28", 1)).toBe("2024-02-29");
  });

  it("names the export as the API does", () => {
    expect(exportName("calls", { from: "2026-12-01", to: "2026-12-07" }, "xlsx")).toBe(
      "calls-2026-12-01_2026-12-07.xlsx",
    );
  });
});

describe("report keys", () => {
  it("shows weekdays, hours, people and the empty key as a person reads them", () => {
    expect(keyText("weekday", "1", "en-US", "none")).toBe("Mon");
    expect(keyText("weekday", "7", "en-US", "none")).toBe("Sun");
    expect(keyText("hour", "09", "en-US", "none")).toBe("09:00");
    expect(keyText("user", "101", "en-US", "none", (e) => `Ivan (${e})`)).toBe("Ivan (101)");
    expect(keyText("label", "", "en-US", "none")).toBe("none");
    expect(keyText("day", "2026-12-01", "en-US", "none")).toBe("2026-12-01");
  });
});

describe("a client's call statistics", () => {
  it("counts answered, missed, talk time, the last call and every month in between", () => {
    const stats = contactStats(
      [
        call("2026-01-10T10:00:00Z", { answered_at: "2026-01-10T10:00:05Z", talk_s: 60 }),
        call("2026-03-31T22:30:00Z", { missed: true, end_reason: "no_answer" }),
        call("2026-03-05T09:00:00Z", {
          direction: "outbound",
          answered_at: "2026-03-05T09:00:10Z",
          talk_s: 30,
        }),
        call("2026-03-06T09:00:00Z", { direction: "outbound", end_reason: "no_answer" }),
      ],
      "Europe/Moscow",
    );
    expect(stats.total).toBe(4);
    expect(stats.answered).toBe(2);
    expect(stats.missed).toBe(1);
    expect(stats.inbound).toBe(2);
    expect(stats.outbound).toBe(2);
    expect(stats.talkS).toBe(90);
    expect(stats.lastCall).toBe("2026-03-31T22:30:00Z");
    // The missed call was on April 1st in Moscow; February had none but is shown.
    expect(stats.perMonth).toEqual([
      { month: "2026-01", calls: 1, answered: 1, missed: 0 },
      { month: "2026-02", calls: 0, answered: 0, missed: 0 },
      { month: "2026-03", calls: 2, answered: 1, missed: 0 },
      { month: "2026-04", calls: 1, answered: 0, missed: 1 },
    ]);
  });

  it("has nothing for a client who never called", () => {
    const stats = contactStats([], "UTC");
    expect(stats.total).toBe(0);
    expect(stats.lastCall).toBeNull();
    expect(stats.perMonth).toEqual([]);
  });
});
