// The caller's card must be on screen before this browser rings. The CRM's screen pop
// and the node's INVITE to the browser leave within milliseconds of each other and race
// (docs/benchmarks.md, screen pop): at one call a second the INVITE won most races by a
// few ms. So the softphone holds its ring until the pop for the same caller was shown,
// or for a short grace when none comes (the CRM is down, an internal call): a ring at most
// that much later, never a card after the ring.

const RECENT_MS = 30_000;

interface Waiter {
  key: string;
  resolve: () => void;
}

const shown = new Map<string, number>();
const waiters = new Set<Waiter>();

/** Digits only, the last ten: "+7 916 123-45-67" and "89161234567" are one caller. */
export function callerKey(number: string): string {
  return number.replace(/\D/g, "").slice(-10);
}

export function popShown(caller: string, at: number = Date.now()): void {
  const key = callerKey(caller);
  if (!key) return;
  shown.set(key, at);
  for (const waiter of [...waiters]) {
    if (waiter.key === key) {
      waiters.delete(waiter);
      waiter.resolve();
    }
  }
}

/** Resolves once the pop for ``caller`` is on screen, or after ``graceMs``. */
export function afterPop(caller: string, graceMs: number, now: number = Date.now()): Promise<void> {
  const key = callerKey(caller);
  const at = shown.get(key);
  if (!key || (at !== undefined && now - at < RECENT_MS)) return Promise.resolve();
  return new Promise((resolve) => {
    const waiter: Waiter = { key, resolve };
    waiters.add(waiter);
    setTimeout(() => {
      if (waiters.delete(waiter)) resolve();
    }, graceMs);
  });
}
