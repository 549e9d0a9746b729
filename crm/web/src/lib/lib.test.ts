import { describe, expect, it } from "vitest";
import { ApiFailure, fieldErrors } from "../api/errors";
import { en, ru } from "../i18n/messages";
import { pickLanguage, translate } from "../i18n/language";
import { draftOf, emptyDraft, onInputs, prepare } from "./contactDraft";
import { formatDuration, humanizeKey, isOverdue, parseCustomValue } from "./format";
import { contactQuery, formatPhone } from "./phone";
import type { Board, BoardStage, Deal } from "../api/types";
import { emptyAfterCall, resultBody } from "./afterCall";
import {
  adjustTotals,
  formatTotals,
  fromCents,
  moveOnBoard,
  needsLossReason,
  neighbourStage,
  toCents,
} from "./board";

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

// crm pages
describe("custom field values", () => {
  it("keeps long digit strings and numbers that would change as text", () => {
    expect(parseCustomValue("40817810099910004312")).toBe("40817810099910004312");
    expect(parseCustomValue("9007199254740993")).toBe("9007199254740993");
    expect(parseCustomValue("0771234567")).toBe("0771234567");
    expect(parseCustomValue("1.10")).toBe("1.10");
    expect(parseCustomValue("9007199254740991")).toBe(9007199254740991);
    expect(parseCustomValue("15000.5")).toBe(15000.5);
  });
});

describe("deals board", () => {
  const deal = (id: string, amount: string | null, currency = "RUB") =>
    ({ id, amount, currency, stage_id: "a", status: "open" }) as unknown as Deal;
  const board = {
    pipeline_id: "p",
    name: "Sales",
    stages: [
      {
        id: "a", name: "New", kind: "open", position: 0, count: 3,
        totals: { RUB: "100.10" }, deals: [deal("d1", "100.10"), deal("d2", null)],
      },
      { id: "b", name: "Won", kind: "won", position: 1, count: 0, totals: {}, deals: [] },
      { id: "c", name: "Lost", kind: "lost", position: 2, count: 0, totals: {}, deals: [] },
    ],
  } as unknown as Board;

  it("sums amounts in cents, without float drift", () => {
    expect(toCents("0.1") + toCents("0.2")).toBe(30n);
    expect(fromCents(toCents("9999999999.99") * 3n)).toBe("29999999999.97");
    expect(adjustTotals({ RUB: "0.30" }, { amount: "0.10", currency: "RUB" }, -1)).toEqual({
      RUB: "0.20",
    });
    expect(adjustTotals({ RUB: "5.00" }, { amount: "5", currency: "RUB" }, -1)).toEqual({});
    expect(adjustTotals({}, { amount: "7.5", currency: "USD" }, 1)).toEqual({ USD: "7.50" });
  });

  it("moves a card with its count and amount to the other column", () => {
    const moved = moveOnBoard(board, "d1", "b");
    const [from, to] = moved.stages;
    expect(from?.deals.map((item) => item.id)).toEqual(["d2"]);
    expect([from?.count, from?.totals]).toEqual([2, {}]);
    expect(to?.deals[0]).toMatchObject({ id: "d1", stage_id: "b", status: "won" });
    expect([to?.count, to?.totals]).toEqual([1, { RUB: "100.10" }]);
    expect(moveOnBoard(board, "d1", "a")).toBe(board);
    expect(moveOnBoard(board, "nope", "b")).toBe(board);
  });

  it("knows the neighbouring stage and that a lost one needs a reason", () => {
    expect(neighbourStage(board.stages, "a", 1)).toBe("b");
    expect(neighbourStage(board.stages, "a", -1)).toBeNull();
    expect(neighbourStage(board.stages, "c", 1)).toBeNull();
    expect(needsLossReason(board.stages[2] as BoardStage)).toBe(true);
    expect(needsLossReason(board.stages[1] as BoardStage)).toBe(false);
  });

  it("formats a column's sums per currency", () => {
    expect(formatTotals({ RUB: "450000.00" }, "en-US").replace(/\s/g, " ")).toBe("RUB 450,000");
    expect(formatTotals({}, "en-US")).toBe("");
  });
});

describe("after-call form", () => {
  it("sends the checked stages by index and only the chosen action", () => {
    const draft = { ...emptyAfterCall(3, "s1"), outcome: " Demo booked ", checked: [true, false, true] };
    expect(resultBody(draft, "required")).toEqual({
      body: { outcome: "Demo booked", script_id: "s1", checked: [0, 2] },
      problems: {},
    });
    const moving = { ...draft, action: "move-deal" as const, dealId: "d", stageId: "" };
    expect(resultBody(moving, "required").problems).toEqual({ "move_deal.stage_id": "required" });
  });

  it("needs an outcome, and a follow-up's time with its zone", () => {
    const draft = {
      ...emptyAfterCall(0, null),
      action: "follow-up" as const,
      followUpTitle: "Send the offer",
      followUpDue: "2026-12-08T10:00",
    };
    const prepared = resultBody(draft, "required");
    expect(prepared.problems).toEqual({ outcome: "required" });
    expect(prepared.body.follow_up?.due_at).toBe(new Date("2026-12-08T10:00").toISOString());
    const noTime = resultBody({ ...draft, outcome: "x", followUpDue: "" }, "required");
    expect(noTime.problems).toEqual({ "follow_up.due_at": "required" });
  });
});
