// The reports page's arithmetic, kept out of the components so it can be tested on its own:
// the period presets in the chosen time zone, the keys as a person reads them, and a
// client's call statistics from the CRM's call list.
import type { CallEntry } from "../api/types";

export type Preset = "today" | "week" | "month30" | "thisMonth";
export const PRESETS: readonly Preset[] = ["today", "week", "month30", "thisMonth"];

export const GROUP_BY = [
  "day",
  "week",
  "month",
  "hour",
  "weekday",
  "user",
  "number",
  "label",
  "group",
] as const;
export type GroupBy = (typeof GROUP_BY)[number];

export const DIRECTIONS = ["inbound", "outbound", "internal", "all"] as const;
export type Direction = (typeof DIRECTIONS)[number];

/** Zones offered besides the browser's own: the tenants are mostly in Russia's zones. */
export const TIME_ZONES: readonly string[] = [
  "Europe/Kaliningrad",
  "Europe/Moscow",
  "Europe/Samara",
  "Asia/Yekaterinburg",
  "Asia/Omsk",
  "Asia/Novosibirsk",
  "Asia/Krasnoyarsk",
  "Asia/Irkutsk",
  "Asia/Yakutsk",
  "Asia/Vladivostok",
  "Asia/Magadan",
  "Asia/Kamchatka",
  "UTC",
];

export function browserTimeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC"; // an engine without time zone data: the API's default
  }
}

/** The zones for the selector: the browser's first, then the list, each once. */
export function timeZoneChoices(current: string): string[] {
  return [...new Set([current, browserTimeZone(), ...TIME_ZONES])];
}

export interface Period {
  from: string;
  to: string;
}

/** The calendar day ``now`` is in ``tz``, as YYYY-MM-DD. */
export function localDay(now: Date, tz: string): string {
  // en-CA writes dates as YYYY-MM-DD; formatToParts keeps it independent of that habit.
  const parts = new Intl.DateTimeFormat("en-CA", {
    timeZone: tz,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
  }).formatToParts(now);
  const part = (type: string) => parts.find((p) => p.type === type)?.value ?? "";
  return `${part("year")}-${part("month")}-${part("day")}`;
}

/** ``day`` plus ``days`` (negative: before), on the calendar (no time zone involved). */
export function addDays(day: string, days: number): string {
  const [y = 1970, m = 1, d = 1] = day.split("-").map(Number);
  const date = new Date(Date.UTC(y, m - 1, d + days));
  return date.toISOString().slice(0, 10);
}

/** The days of a preset as the API takes them (both included), in ``tz``. */
export function presetPeriod(preset: Preset, now: Date, tz: string): Period {
  const today = localDay(now, tz);
  switch (preset) {
    case "today":
      return { from: today, to: today };
    case "week":
      return { from: addDays(today, -6), to: today };
    case "month30":
      return { from: addDays(today, -29), to: today };
    case "thisMonth":
      return { from: `${today.slice(0, 8)}01`, to: today };
  }
}

/** answered within the service level / total, as "83%"; "—" without calls. */
export function percent(part: number | null | undefined, locale: string): string {
  if (part === null || part === undefined || Number.isNaN(part)) return "—";
  return new Intl.NumberFormat(locale, { style: "percent", maximumFractionDigits: 1 }).format(
    part,
  );
}

/**
 * A row's key as a person reads it: weekdays and hours by name, the empty key (a missed call
 * nobody's phone rang for, a call with no label) as ``none``. Days, weeks, months, numbers
 * and groups are shown as they come; extensions go through ``extensionName``.
 */
export function keyText(
  groupBy: GroupBy,
  key: string,
  locale: string,
  none: string,
  extensionName: (extension: string) => string = (extension) => extension,
): string {
  if (key === "") return none;
  if (groupBy === "weekday") {
    const iso = Number(key);
    if (iso >= 1 && iso <= 7) {
      // 2024-01-01 was a Monday: ISO weekday n is January n of that year.
      const date = new Date(Date.UTC(2024, 0, iso));
      return new Intl.DateTimeFormat(locale, { weekday: "short", timeZone: "UTC" }).format(date);
    }
  }
  if (groupBy === "hour" && /^\d{2}$/.test(key)) return `${key}:00`;
  if (groupBy === "user") return extensionName(key);
  return key;
}

/** The file name the API gives an export (its Content-Disposition is not readable across
 * origins, so the page names the download the same way). */
export function exportName(report: string, period: Period, format: "csv" | "xlsx"): string {
  return `${report}-${period.from}_${period.to}.${format}`;
}

export interface ContactStats {
  total: number;
  answered: number;
  missed: number;
  inbound: number;
  outbound: number;
  talkS: number;
  /** ISO time of the newest call, null without calls. */
  lastCall: string | null;
  /** Calls per month ('YYYY-MM' in ``tz``), oldest first, months without calls included. */
  perMonth: { month: string; calls: number; answered: number; missed: number }[];
}

/**
 * A client's call statistics from their calls in the CRM (any order). Missed is the CRM's
 * own flag (an inbound call that ended unanswered); an outbound call nobody picked up and
 * a call still ringing count in the total and the months only.
 */
export function contactStats(calls: readonly CallEntry[], tz: string): ContactStats {
  const stats: ContactStats = {
    total: 0,
    answered: 0,
    missed: 0,
    inbound: 0,
    outbound: 0,
    talkS: 0,
    lastCall: null,
    perMonth: [],
  };
  const months = new Map<string, { calls: number; answered: number; missed: number }>();
  let newest = -Infinity;
  for (const call of calls) {
    const started = new Date(call.started_at);
    if (Number.isNaN(started.getTime())) continue;
    stats.total += 1;
    if (call.direction === "inbound") stats.inbound += 1;
    else stats.outbound += 1;
    const answered = call.answered_at !== null;
    if (answered) stats.answered += 1;
    else if (call.missed) stats.missed += 1;
    stats.talkS += call.talk_s;
    if (started.getTime() > newest) {
      newest = started.getTime();
      stats.lastCall = call.started_at;
    }
    const month = localDay(started, tz).slice(0, 7);
    const entry = months.get(month) ?? { calls: 0, answered: 0, missed: 0 };
    entry.calls += 1;
    if (answered) entry.answered += 1;
    else if (call.missed) entry.missed += 1;
    months.set(month, entry);
  }
  const keys = [...months.keys()].sort();
  const first = keys[0];
  const last = keys[keys.length - 1];
  if (first !== undefined && last !== undefined) {
    for (let month = first; month <= last; month = nextMonth(month)) {
      const counts = months.get(month) ?? { calls: 0, answered: 0, missed: 0 };
      stats.perMonth.push({ month, ...counts });
    }
  }
  return stats;
}

function nextMonth(month: string): string {
  const [y = 1970, m = 1] = month.split("-").map(Number);
  return m === 12 ? `${y + 1}-01` : `${y}-${String(m + 1).padStart(2, "0")}`;
}
