// Dates, durations and values as the pages show them.

export function formatDateTime(iso: string | null | undefined, locale: string): string {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return new Intl.DateTimeFormat(locale, {
    day: "2-digit",
    month: "2-digit",
    year: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  }).format(date);
}

/** 75 -> "1:15"; 3725 -> "1:02:05". */
export function formatDuration(seconds: number): string {
  const whole = Math.max(0, Math.round(seconds));
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

export function formatNumber(value: number, locale: string): string {
  return new Intl.NumberFormat(locale, { maximumFractionDigits: 2 }).format(value);
}

/** An open task past its due time. */
export function isOverdue(
  task: { status: string; due_at: string | null },
  now: Date = new Date(),
): boolean {
  if (task.status !== "open" || !task.due_at) return false;
  return new Date(task.due_at).getTime() < now.getTime();
}

/** "orders_total" -> "Orders total": a custom field's key when no label is known. */
export function humanizeKey(key: string): string {
  const words = key.replace(/_/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/**
 * A custom field's value as typed in a form: a number if it reads as one and a JSON number
 * gives back exactly what was typed, true/false as booleans, otherwise the text. An account
 * number of 20 digits, an ИНН with a leading zero or "1.10" stay text: as numbers they
 * would come back rounded or changed.
 */
export function parseCustomValue(text: string): string | number | boolean {
  const trimmed = text.trim();
  if (/^-?\d+(\.\d+)?$/.test(trimmed)) {
    const value = Number(trimmed);
    const exact = String(value) === trimmed;
    if (exact && (!Number.isInteger(value) || Number.isSafeInteger(value))) return value;
    return trimmed;
  }
  if (trimmed === "true") return true;
  if (trimmed === "false") return false;
  return trimmed;
}
