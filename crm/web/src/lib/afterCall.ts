// The after-call form's state and the body it sends (POST /v1/calls/{call_id}/result):
// kept apart from the page so the mapping is tested on its own.
import type { CallResultCreate } from "../api/types";

export interface AfterCallDraft {
  scriptId: string | null;
  checked: boolean[]; // one per stage of the script
  outcome: string;
  action: "none" | "move-deal" | "close-task" | "follow-up";
  dealId: string;
  stageId: string;
  lossReason: string;
  taskId: string;
  followUpTitle: string;
  followUpDue: string; // <input type="datetime-local">: local time, no zone
}

export function emptyAfterCall(stages: number, scriptId: string | null): AfterCallDraft {
  return {
    scriptId,
    checked: Array.from({ length: stages }, () => false),
    outcome: "",
    action: "none",
    dealId: "",
    stageId: "",
    lossReason: "",
    taskId: "",
    followUpTitle: "",
    followUpDue: "",
  };
}

export interface PreparedResult {
  body: CallResultCreate;
  /** Problems found before asking the API, keyed like the API's fields. */
  problems: Record<string, string>;
}

/** The body to send; ``required`` is the text for a missing value. */
export function resultBody(draft: AfterCallDraft, required: string): PreparedResult {
  const problems: Record<string, string> = {};
  const body: CallResultCreate = {
    outcome: draft.outcome.trim(),
    script_id: draft.scriptId,
    checked: draft.checked.flatMap((checked, index) => (checked ? [index] : [])),
  };
  if (body.outcome === "") problems.outcome = required;
  if (draft.action === "move-deal") {
    if (!draft.dealId) problems["move_deal.deal_id"] = required;
    if (!draft.stageId) problems["move_deal.stage_id"] = required;
    body.move_deal = {
      deal_id: draft.dealId,
      stage_id: draft.stageId,
      loss_reason: draft.lossReason.trim() === "" ? null : draft.lossReason.trim(),
    };
  } else if (draft.action === "close-task") {
    if (!draft.taskId) problems.close_task_id = required;
    body.close_task_id = draft.taskId;
  } else if (draft.action === "follow-up") {
    if (draft.followUpTitle.trim() === "") problems["follow_up.title"] = required;
    const due = new Date(draft.followUpDue);
    if (draft.followUpDue === "" || Number.isNaN(due.getTime())) {
      problems["follow_up.due_at"] = required;
    }
    body.follow_up = {
      title: draft.followUpTitle.trim(),
      // The browser's zone is the agent's: sent as an instant, the API wants the zone.
      due_at: Number.isNaN(due.getTime()) ? "" : due.toISOString(),
    };
  }
  return { body, problems };
}
