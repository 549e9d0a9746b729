// The contact form's state and what it sends: kept apart from the page so the mapping of
// the API's field errors back onto the inputs is tested on its own.
import type { Contact, ContactCreate } from "../api/types";
import { parseCustomValue } from "./format";

export interface CustomRow {
  key: string;
  value: string;
}

export interface Draft {
  name: string;
  phones: string[];
  emails: string[];
  category: string;
  owner: string; // user id, "" for nobody
  vip: boolean;
  source: string;
  custom: CustomRow[];
}

export function emptyDraft(): Draft {
  return {
    name: "",
    phones: [""],
    emails: [],
    category: "client",
    owner: "",
    vip: false,
    source: "",
    custom: [],
  };
}

export function draftOf(contact: Contact): Draft {
  return {
    name: contact.name,
    phones: contact.phones.length > 0 ? [...contact.phones] : [""],
    emails: [...contact.emails],
    category: contact.category,
    owner: contact.owner_user_id ?? "",
    vip: contact.vip,
    source: contact.source_label,
    custom: Object.entries(contact.custom).map(([key, value]) => ({
      key,
      value: value === null ? "" : String(value),
    })),
  };
}

export interface Prepared {
  body: Required<Omit<ContactCreate, "company_id">>;
  /** The index in the body's list -> the index of the input it came from. */
  phoneInputs: number[];
  emailInputs: number[];
  /** Problems found before asking the API, keyed like the API's fields. */
  problems: Record<string, string>;
}

function kept(values: string[]): { values: string[]; inputs: number[] } {
  const result = { values: [] as string[], inputs: [] as number[] };
  values.forEach((value, index) => {
    if (value.trim() !== "") {
      result.values.push(value.trim());
      result.inputs.push(index);
    }
  });
  return result;
}

/** The body to send; empty rows left out. */
export function prepare(draft: Draft, duplicateKey: (key: string) => string): Prepared {
  const phones = kept(draft.phones);
  const emails = kept(draft.emails);
  const custom: Record<string, string | number | boolean> = {};
  const problems: Record<string, string> = {};
  for (const row of draft.custom) {
    const key = row.key.trim();
    if (key === "" && row.value.trim() === "") continue;
    if (key in custom) problems.custom = duplicateKey(key);
    custom[key] = parseCustomValue(row.value);
  }
  return {
    body: {
      name: draft.name.trim(),
      phones: phones.values,
      emails: emails.values,
      category: draft.category,
      owner_user_id: draft.owner === "" ? null : draft.owner,
      vip: draft.vip,
      source_label: draft.source.trim(),
      custom,
    },
    phoneInputs: phones.inputs,
    emailInputs: emails.inputs,
    problems,
  };
}

/**
 * The API's field problems ("phones[1]" of the body sent) as the form's inputs: list
 * indexes point back at the input the value came from, since empty inputs are not sent.
 */
export function onInputs(
  fields: Record<string, string>,
  prepared: Pick<Prepared, "phoneInputs" | "emailInputs">,
): Record<string, string> {
  const mapped: Record<string, string> = {};
  for (const [field, message] of Object.entries(fields)) {
    const match = /^(phones|emails)\[(\d+)\](.*)$/.exec(field);
    if (match) {
      const [, list, index, rest] = match;
      const inputs = list === "phones" ? prepared.phoneInputs : prepared.emailInputs;
      const input = inputs[Number(index)];
      mapped[input === undefined ? `${list}` : `${list}[${input}]${rest ?? ""}`] = message;
    } else {
      mapped[field] = message;
    }
  }
  return mapped;
}
