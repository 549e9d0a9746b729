// The browser's own SIP device (POST /v1/users/me/devices on the control API): the password
// is shown once, so the browser keeps it in localStorage, per user, and makes a new device
// only when it holds none (or the registrar refuses the one it holds: the control API
// keeps five browser devices a user, replacing the oldest).

export interface SipCredentials {
  deviceId: string;
  username: string;
  password: string;
  domain: string;
  /** Epoch ms the device was made: the nodes load a new device's credentials a moment
   * after the control API made it, so early refusals are retried, not replaced. */
  createdAt?: number;
}

const PREFIX = "vpbx.softphone.";

export function credentialsKey(userId: string): string {
  return `${PREFIX}${userId}`;
}

export function readCredentials(storage: Storage, userId: string): SipCredentials | null {
  let raw: string | null;
  try {
    raw = storage.getItem(credentialsKey(userId));
  } catch {
    return null;
  }
  if (raw === null) return null;
  try {
    const value = JSON.parse(raw) as Partial<SipCredentials>;
    if (
      typeof value.deviceId === "string" &&
      typeof value.username === "string" &&
      typeof value.password === "string" &&
      typeof value.domain === "string" &&
      value.username &&
      value.password &&
      value.domain
    ) {
      return value as SipCredentials;
    }
  } catch {
    // unreadable: a new device is made
  }
  storage.removeItem(credentialsKey(userId));
  return null;
}

export function writeCredentials(
  storage: Storage,
  userId: string,
  credentials: SipCredentials | null,
): void {
  try {
    if (credentials === null) storage.removeItem(credentialsKey(userId));
    else storage.setItem(credentialsKey(userId), JSON.stringify(credentials));
  } catch {
    // storage refused: a new device at the next load (the oldest is replaced)
  }
}

/** "Chrome on Linux": the device's name in the user's list, so they can tell browsers apart. */
export function browserDeviceName(userAgent: string): string {
  const browser =
    /Edg\//.test(userAgent) ? "Edge"
    : /Firefox\//.test(userAgent) ? "Firefox"
    : /Chrom(e|ium)\//.test(userAgent) ? "Chromium"
    : /Safari\//.test(userAgent) ? "Safari"
    : "Browser";
  const system =
    /Windows/.test(userAgent) ? "Windows"
    : /Mac OS X/.test(userAgent) ? "macOS"
    : /Android/.test(userAgent) ? "Android"
    : /Linux/.test(userAgent) ? "Linux"
    : "";
  return system ? `${browser} on ${system}` : browser;
}

/** What the dial pad's text becomes: an extension or a number, digits and a leading +;
 * null when nothing callable is left. */
export function dialTarget(text: string): string | null {
  const trimmed = text.trim();
  const plus = trimmed.startsWith("+");
  const digits = trimmed.replace(/[^0-9*#]/g, "");
  if (!digits) return null;
  return plus ? `+${digits}` : digits;
}
