import { createContext, useCallback, useContext, useEffect, useMemo, useState } from "react";
import type { ReactNode } from "react";
import {
  isMessageKey,
  locale,
  pickLanguage,
  STORAGE_KEY,
  translate,
  type Language,
} from "./language";
import type { MessageKey } from "./messages";

export interface I18n {
  language: Language;
  setLanguage(language: Language): void;
  t(key: MessageKey, params?: Record<string, string | number>): string;
  /** A text for an API value (a category, a task kind): ``prefix.value`` if known, else value. */
  tv(prefix: string, value: string): string;
  locale: string;
}

const I18nContext = createContext<I18n | null>(null);

function storedLanguage(): string | null {
  try {
    return window.localStorage.getItem(STORAGE_KEY);
  } catch {
    return null; // storage refused (privacy mode): the browser's language decides
  }
}

export function I18nProvider({ children }: { children: ReactNode }) {
  const [language, setLanguageState] = useState<Language>(() =>
    pickLanguage(storedLanguage(), navigator.languages ?? [navigator.language]),
  );
  useEffect(() => {
    document.documentElement.lang = language;
  }, [language]);
  const setLanguage = useCallback((next: Language) => {
    try {
      window.localStorage.setItem(STORAGE_KEY, next);
    } catch {
      // not kept across reloads; still switched now
    }
    setLanguageState(next);
  }, []);
  const value = useMemo<I18n>(
    () => ({
      language,
      setLanguage,
      t: (key, params) => translate(language, key, params),
      tv: (prefix, raw) => {
        const key = `${prefix}.${raw}`;
        return isMessageKey(key) ? translate(language, key) : raw;
      },
      locale: locale(language),
    }),
    [language, setLanguage],
  );
  return <I18nContext.Provider value={value}>{children}</I18nContext.Provider>;
}

export function useI18n(): I18n {
  const value = useContext(I18nContext);
  if (value === null) throw new Error("useI18n outside I18nProvider");
  return value;
}
