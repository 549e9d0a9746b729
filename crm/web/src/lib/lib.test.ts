import { describe, expect, it } from "vitest";
import { ApiFailure, fieldErrors } from "../api/errors";
import { en, ru } from "../i18n/messages";
import { pickLanguage, translate } from "../i18n/language";
import { draftOf, emptyDraft, onInputs, prepare } from "./contactDraft";
import { formatDuration, humanizeKey, isOverdue, parseCustomValue } from "./format";
import { contactQuery, formatPhone } from "./phone";

describe("language", () => {
  it("takes the stored choice, then the browser's, then Russian", () => {
    expect(pickLanguage("en", ["ru-RU"])).toBe("en");
    expect(pickLanguage(null, ["de-DE", "en-US"])).toBe("en");
    expect(pickLanguage("xx", ["de-DE"])).toBe("ru");
    expect(pickLanguage(null, [])).toBe("ru");
  });

  it("fills placeholders and keeps unknown ones", () => {
    expect(translate("en", "contacts.total", { count: 3 })).toBe("Found: 3");
    expect(translate("ru", "form.phone", {})).toBe("Телефон {n}");
  });

  it("has every Russian text in English", () => {
    expect(Object.keys(en).sort()).toEqual(Object.keys(ru).sort());
    for (const [key, text] of Object.entries(en)) expect(text, key).not.toBe("");
  });
});

describe("phone search", () => {
  it("looks a whole number up exactly, in any local form", () => {
    expect(contactQuery("8 (916) 123-45-67", "RU")).toEqual({ phone: "8 (916) 123-45-67" });
    expect(contactQuery("+79161234567", "RU")).toEqual({ phone: "+79161234567" });
  });

  it("searches a part of a number among the digits, a leading 8 read as 7", () => {
    expect(contactQuery("8916 12", "RU")).toEqual({ q: "791612" });
    expect(contactQuery("916-12", "RU")).toEqual({ q: "91612" });
    expect(contactQuery("+7 916", "RU")).toEqual({ q: "7916" });
    expect(contactQuery("8916", "DE")).toEqual({ q: "8916" });
  });

  it("searches names as typed", () => {
    expect(contactQuery("  Иван ", "RU")).toEqual({ q: "Иван" });
    expect(contactQuery("", "RU")).toEqual({});
    expect(contactQuery("12", "RU")).toEqual({ q: "12" });
  });

  it("formats Russian numbers for reading", () => {
    expect(formatPhone("+79161234567")).toBe("+7 916 123-45-67");
    expect(formatPhone("+4930123456")).toBe("+4930123456");
  });
});

describe("format", () => {
  it("shows durations", () => {
    expect(formatDuration(0)).toBe("0:00");
    expect(formatDuration(75)).toBe("1:15");
    expect(formatDuration(3725)).toBe("1:02:05");
  });

  it("marks open tasks past due as overdue", () => {
    const now = new Date("2030-01-01T12:00:00Z");
    expect(isOverdue({ status: "open", due_at: "2030-01-01T11:00:00Z" }, now)).toBe(true);
    expect(isOverdue({ status: "done", due_at: "2030-01-01T11:00:00Z" }, now)).toBe(false);
    expect(isOverdue({ status: "open", due_at: "2030-01-01T13:00:00Z" }, now)).toBe(false);
    expect(isOverdue({ status: "open", due_at: null }, now)).toBe(false);
  });

  it("reads custom values and names", () => {
    expect(parseCustomValue("12")).toBe(12);
    expect(parseCustomValue("-15000.5")).toBe(-15000.5);
    expect(parseCustomValue("true")).toBe(true);
    expect(parseCustomValue(" gold ")).toBe("gold");
    expect(humanizeKey("last_order")).toBe("Last order");
  });
});

describe("contact form", () => {
  it("leaves empty inputs out and maps the API's errors back onto the inputs", () => {
    const draft = { ...emptyDraft(), name: "X", phones: ["", "not a phone", "+79161234567"] };
    const prepared = prepare(draft, (key) => `dup ${key}`);
    expect(prepared.body.phones).toEqual(["not a phone", "+79161234567"]);
    const failure = new ApiFailure(422, {
      error_id: "validation-failed",
      message: "invalid body.phones[0]",
      details: [
        { field: "body.phones[0]", message: "not a phone number" },
        { field: "body.name", message: "too short" },
      ],
    });
    expect(onInputs(fieldErrors(failure), prepared)).toEqual({
      "phones[1]": "not a phone number",
      name: "too short",
    });
  });

  it("sends custom fields typed, and refuses a key given twice", () => {
    const draft = {
      ...emptyDraft(),
      name: "X",
      custom: [
        { key: "orders", value: "12" },
        { key: "", value: "" },
        { key: "debt", value: "1500.5" },
      ],
    };
    expect(prepare(draft, String).body.custom).toEqual({ orders: 12, debt: 1500.5 });
    const twice = { ...draft, custom: [...draft.custom, { key: "orders", value: "1" }] };
    expect(prepare(twice, (key) => `dup ${key}`).problems).toEqual({ custom: "dup orders" });
  });

  it("starts an edit from the contact", () => {
    const draft = draftOf({
      id: "c",
      name: "Иван",
      phones: [],
      emails: ["a@b.cd"],
      company_id: null,
      category: "supplier",
      region: "",
      region_name: "",
      owner_user_id: null,
      vip: true,
      source_label: "yandex",
      custom: { orders: 3, note: null },
      created_at: "2030-01-01T00:00:00Z",
      updated_at: "2030-01-01T00:00:00Z",
    });
    expect(draft.phones).toEqual([""]);
    expect(draft.custom).toEqual([
      { key: "orders", value: "3" },
      { key: "note", value: "" },
    ]);
  });
});
