// The deals board's logic, apart from the page so it is tested on its own: amounts summed
// exactly (cents as BigInt: a column of many deals must not drift like floats do), a deal
// moved between columns before the server confirms it, the stage next to a stage.
import type { Board, BoardStage, Deal } from "../api/types";

/** "1500.5" -> 150050n; "" or null -> 0n. The API answers amounts as decimal strings. */
export function toCents(amount: string | null | undefined): bigint {
  if (!amount) return 0n;
  const match = /^(-?)(\d+)(?:\.(\d{1,2}))?$/.exec(amount.trim());
  if (!match) return 0n;
  const [, sign, whole, fraction = ""] = match;
  const cents = BigInt(whole ?? "0") * 100n + BigInt(fraction.padEnd(2, "0"));
  return sign === "-" ? -cents : cents;
}

export function fromCents(cents: bigint): string {
  const negative = cents < 0n;
  const value = negative ? -cents : cents;
  const text = `${value / 100n}.${String(value % 100n).padStart(2, "0")}`;
  return negative ? `-${text}` : text;
}

/** A column's totals with ``deal``'s amount added (``sign`` 1) or taken away (-1). */
export function adjustTotals(
  totals: Record<string, string>,
  deal: Pick<Deal, "amount" | "currency">,
  sign: 1 | -1,
): Record<string, string> {
  if (!deal.amount) return totals;
  const next = { ...totals };
  const cents = toCents(next[deal.currency]) + BigInt(sign) * toCents(deal.amount);
  if (cents === 0n) delete next[deal.currency];
  else next[deal.currency] = fromCents(cents);
  return next;
}

/** "450 000 ₽ · 1 200 $" in the page's locale; "" when nothing is summed. */
export function formatTotals(totals: Record<string, string>, locale: string): string {
  return Object.entries(totals)
    .map(([currency, amount]) => formatMoney(amount, currency, locale))
    .join(" · ");
}

export function formatMoney(amount: string, currency: string, locale: string): string {
  try {
    return new Intl.NumberFormat(locale, {
      style: "currency",
      currency,
      maximumFractionDigits: toCents(amount) % 100n === 0n ? 0 : 2,
    }).format(Number(amount));
  } catch {
    return `${amount} ${currency}`; // a currency code Intl does not know
  }
}

/** The board with the deal in ``toStage`` (first in the column), counts and sums moved. */
export function moveOnBoard(board: Board, dealId: string, toStageId: string): Board {
  const from = board.stages.find((stage) => stage.deals.some((deal) => deal.id === dealId));
  const to = board.stages.find((stage) => stage.id === toStageId);
  if (!from || !to || from.id === to.id) return board;
  const deal = from.deals.find((item) => item.id === dealId) as Deal;
  const moved: Deal = { ...deal, stage_id: to.id, status: to.kind };
  return {
    ...board,
    stages: board.stages.map((stage): BoardStage => {
      if (stage.id === from.id) {
        return {
          ...stage,
          count: stage.count - 1,
          totals: adjustTotals(stage.totals, deal, -1),
          deals: stage.deals.filter((item) => item.id !== dealId),
        };
      }
      if (stage.id === to.id) {
        return {
          ...stage,
          count: stage.count + 1,
          totals: adjustTotals(stage.totals, deal, 1),
          deals: [moved, ...stage.deals],
        };
      }
      return stage;
    }),
  };
}

/** The stage before (-1) or after (1) ``stageId`` in the board's order; null at the ends. */
export function neighbourStage(
  stages: readonly Pick<BoardStage, "id">[],
  stageId: string,
  step: -1 | 1,
): string | null {
  const index = stages.findIndex((stage) => stage.id === stageId);
  if (index < 0) return null;
  return stages[index + step]?.id ?? null;
}

/** Moving into a lost stage asks why; the API refuses it without a reason. */
export function needsLossReason(stage: Pick<BoardStage, "kind">): boolean {
  return stage.kind === "lost";
}
