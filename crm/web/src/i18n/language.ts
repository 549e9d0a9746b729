// Which UI language to show: the person's own choice, else the browser's, else the default.
import { en, ru, type MessageKey, type Messages } from "./messages";

export const LANGUAGES = ["ru", "en"] as const;
export type Language = (typeof LANGUAGES)[number];
export const DEFAULT_LANGUAGE: Language = "ru";
export const STORAGE_KEY = "vpbx.language";

const CATALOGS: Record<Language, Messages> = { ru, en };

export function isLanguage(value: unknown): value is Language {
  return typeof value === "string" && (LANGUAGES as readonly string[]).includes(value);
}

/** The stored choice if valid, else the first browser language we have, else ``fallback``. */
export function pickLanguage(
  stored: string | null,
  browser: readonly string[],
  fallback: Language = DEFAULT_LANGUAGE,
): Language {
  if (isLanguage(stored)) return stored;
  for (const tag of browser) {
    const primary = tag.toLowerCase().split("-")[0];
    if (isLanguage(primary)) return primary;
  }
  return fallback;
}

/** The text of ``key`` in ``language`` with {placeholders} filled in. */
export function translate(
  language: Language,
  key: MessageKey,
  params: Record<string, string | number> = {},
): string {
  const template = CATALOGS[language][key];
  return template.replace(/\{(\w+)\}/g, (whole, name: string) =>
    name in params ? String(params[name]) : whole,
  );
}

/** Is ``key`` one of the catalogue's keys (for keys built from API values)? */
export function isMessageKey(key: string): key is MessageKey {
  return key in ru;
}

export function locale(language: Language): string {
  return language === "ru" ? "ru-RU" : "en-GB";
}
