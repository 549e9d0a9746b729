// Phones as people read and type them. The API stores E.164 and finds a full number in any
// common local form (?phone=); a part of a number is matched against the E.164 digits (?q=).

const PHONE_CHARS = /^[\d\s()+\-.]+$/;

/** "+79161234567" -> "+7 916 123-45-67"; other numbers as given. */
export function formatPhone(e164: string): string {
  const ru = /^\+7(\d{3})(\d{3})(\d{2})(\d{2})$/.exec(e164);
  if (ru) return `+7 ${ru[1]} ${ru[2]}-${ru[3]}-${ru[4]}`;
  return e164;
}

export type ContactQuery = { phone: string } | { q: string } | Record<string, never>;

/**
 * What a search box's text asks the API: a whole phone number (10 digits or more, only
 * phone characters) is looked up exactly in any form (8 916..., +7 (916)...); a part of a
 * number is searched among the digits, with a Russian trunk prefix 8 read as +7; anything
 * else is a part of the name.
 */
export function contactQuery(text: string, country: string): ContactQuery {
  const trimmed = text.trim();
  if (trimmed === "") return {};
  if (!PHONE_CHARS.test(trimmed)) return { q: trimmed };
  let digits = trimmed.replace(/\D/g, "");
  if (digits.length >= 10) return { phone: trimmed };
  if (digits.length < 3) return { q: trimmed };
  if (!trimmed.startsWith("+") && digits.startsWith("8") && (country === "RU" || country === "KZ")) {
    digits = `7${digits.slice(1)}`;
  }
  return { q: digits };
}

/** The digits of a phone-like text, for the fallback search when ?phone= cannot read it. */
export function phoneDigits(text: string): string {
  return text.replace(/\D/g, "");
}
