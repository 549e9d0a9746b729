import { useCallback, useState, type FormEvent } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { ApiFailure, errorText, fieldErrors, unwrap } from "../api/errors";
import type { CallEntry, CallResult } from "../api/types";
import { useWorkspace } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import { emptyAfterCall, resultBody, type AfterCallDraft } from "../lib/afterCall";
import { formatDateTime, formatDuration } from "../lib/format";
import { formatPhone } from "../lib/phone";
import { useLoad } from "../lib/useLoad";

const ACTIONS = ["none", "move-deal", "close-task", "follow-up"] as const;

/**
 * The after-call form (/after-call/:callId), opened by the softphone when a call the agent
 * answered ends: the script's stages checked off, the outcome, and one action.
 */
export function AfterCall() {
  const { callId = "" } = useParams();
  const { t } = useI18n();
  const { crm } = useWorkspace();
  const load = useCallback(async () => {
    const path = { call_id: callId };
    const call = unwrap(await crm.GET("/v1/calls/{call_id}", { params: { path } }));
    const script = unwrap(await crm.GET("/v1/calls/{call_id}/script", { params: { path } }));
    let contact = null;
    let deals = null;
    let tasks = null;
    let stages = new Map<string, { name: string; kind: string; pipeline: string }>();
    if (call.contact_id) {
      const id = call.contact_id;
      const [contactAnswer, dealsAnswer, tasksAnswer, pipelines] = await Promise.all([
        crm.GET("/v1/contacts/{contact_id}", { params: { path: { contact_id: id } } }),
        crm.GET("/v1/deals", { params: { query: { contact_id: id, status: "open", limit: 100 } } }),
        crm.GET("/v1/tasks", { params: { query: { contact_id: id, status: "open", limit: 100 } } }),
        crm.GET("/v1/pipelines", { params: { query: { limit: 100 } } }),
      ]);
      contact = unwrap(contactAnswer);
      deals = unwrap(dealsAnswer).items;
      tasks = unwrap(tasksAnswer).items;
      stages = new Map(
        unwrap(pipelines).items.flatMap((pipeline) =>
          pipeline.stages.map(
            (stage) => [stage.id, { name: stage.name, kind: stage.kind, pipeline: pipeline.id }] as const,
          ),
        ),
      );
    }
    return { call, script, contact, deals: deals ?? [], tasks: tasks ?? [], stages };
  }, [crm, callId]);
  const { data, error } = useLoad(load, callId);

  if (error) {
    const missing = error instanceof ApiFailure && error.status === 404;
    return (
      <section className="page narrow">
        <p className="error" role="alert">
          {missing ? t("afterCall.notFound") : errorText(error)}
        </p>
      </section>
    );
  }
  if (!data) return <p className="page muted">{t("app.loading")}</p>;
  return <AfterCallForm key={callId} {...data} />;
}

function AfterCallForm({
  call,
  script,
  contact,
  deals,
  tasks,
  stages,
}: {
  call: CallEntry;
  script: { id: string; name: string; stages: string[] } | null;
  contact: { id: string; name: string } | null;
  deals: { id: string; title: string; stage_id: string; pipeline_id: string }[];
  tasks: { id: string; title: string; kind: string }[];
  stages: Map<string, { name: string; kind: string; pipeline: string }>;
}) {
  const { t, tv, locale } = useI18n();
  const { crm } = useWorkspace();
  const navigate = useNavigate();
  const [draft, setDraft] = useState<AfterCallDraft>(() => ({
    ...emptyAfterCall(script?.stages.length ?? 0, script?.id ?? null),
    // The missed call this one returns is the task most often closed.
    taskId: tasks.find((task) => task.kind === "missed-call")?.id ?? tasks[0]?.id ?? "",
    dealId: deals[0]?.id ?? "",
  }));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [banner, setBanner] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const change = (changes: Partial<AfterCallDraft>) => setDraft((previous) => ({ ...previous, ...changes }));

  const who = contact?.name ?? formatPhone(call.phone);
  const deal = deals.find((item) => item.id === draft.dealId);
  const dealStages = [...stages.entries()].filter(([, stage]) => stage.pipeline === deal?.pipeline_id);
  const lost = stages.get(draft.stageId)?.kind === "lost";

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const prepared = resultBody(draft, t("afterCall.required"));
    if (Object.keys(prepared.problems).length > 0) {
      setErrors(prepared.problems);
      setBanner(t("form.fixErrors"));
      return;
    }
    setBusy(true);
    setErrors({});
    setBanner(null);
    try {
      unwrap(
        await crm.POST("/v1/calls/{call_id}/result", {
          params: { path: { call_id: call.call_id } },
          body: prepared.body,
        }),
      );
      navigate(contact ? `/contacts/${contact.id}` : "/contacts");
    } catch (failure) {
      setBusy(false);
      const fields = failure instanceof ApiFailure ? fieldErrors(failure) : {};
      setErrors(fields);
      setBanner(errorText(failure));
    }
  };

  const fieldError = (name: string) =>
    errors[name] ? (
      <p className="field-error" id={`${name.replace(/\W/g, "-")}-error`} role="alert">
        {errors[name]}
      </p>
    ) : null;

  return (
    <section className="page narrow after-call">
      <h1>{t("afterCall.title")}</h1>
      <p>
        {t("afterCall.call", { who })} · {formatDateTime(call.started_at, locale)}
        {call.talk_s > 0 && ` · ${formatDuration(call.talk_s)}`}
        {call.number && <span className="muted"> · {t("calls.via", { number: formatPhone(call.number) })}</span>}
        {call.label && <span className="tag">{call.label}</span>}
      </p>
      {contact && (
        <p>
          <Link to={`/contacts/${contact.id}`}>{t("afterCall.toCard")}</Link>
        </p>
      )}
      {call.result ? (
        <StoredResult result={call.result} />
      ) : (
        <form className="form" noValidate onSubmit={(event) => void submit(event)}>
          {banner && (
            <p className="error banner" role="alert">
              {banner}
            </p>
          )}
          <fieldset>
            <legend>{script ? t("afterCall.script", { name: script.name }) : t("afterCall.noScript")}</legend>
            {script?.stages.map((text, index) => (
              <label className="check script-stage" key={index}>
                <input
                  type="checkbox"
                  checked={draft.checked[index] ?? false}
                  onChange={(event) =>
                    change({
                      checked: draft.checked.map((value, at) => (at === index ? event.target.checked : value)),
                    })
                  }
                />
                {text}
              </label>
            ))}
            {fieldError("checked")}
          </fieldset>
          <div className={errors.outcome ? "field invalid" : "field"}>
            <label htmlFor="outcome">{t("afterCall.outcome")}</label>
            <textarea
              id="outcome"
              rows={3}
              maxLength={2000}
              value={draft.outcome}
              aria-invalid={errors.outcome ? true : undefined}
              aria-describedby={errors.outcome ? "outcome-error" : undefined}
              onChange={(event) => change({ outcome: event.target.value })}
            />
            {fieldError("outcome")}
          </div>
          <fieldset>
            <legend>{t("afterCall.action")}</legend>
            {ACTIONS.map((action) => {
              const unavailable =
                (action === "move-deal" && deals.length === 0) ||
                (action === "close-task" && tasks.length === 0);
              return (
                <label className="check action" key={action}>
                  <input
                    type="radio"
                    name="action"
                    value={action}
                    disabled={unavailable}
                    checked={draft.action === action}
                    onChange={() => change({ action })}
                  />
                  {t(`afterCall.action.${action}`)}
                </label>
              );
            })}
          </fieldset>
          {draft.action === "move-deal" && (
            <div className="columns">
              <div className="field">
                <label htmlFor="deal">{t("afterCall.deal")}</label>
                <select id="deal" value={draft.dealId} onChange={(event) => change({ dealId: event.target.value, stageId: "" })}>
                  {deals.map((item) => (
                    <option key={item.id} value={item.id}>
                      {item.title} ({stages.get(item.stage_id)?.name ?? "…"})
                    </option>
                  ))}
                </select>
                {fieldError("move_deal.deal_id")}
              </div>
              <div className={errors["move_deal.stage_id"] ? "field invalid" : "field"}>
                <label htmlFor="stage">{t("afterCall.stage")}</label>
                <select
                  id="stage"
                  value={draft.stageId}
                  aria-invalid={errors["move_deal.stage_id"] ? true : undefined}
                  onChange={(event) => change({ stageId: event.target.value })}
                >
                  <option value="">—</option>
                  {dealStages.map(([id, stage]) => (
                    <option key={id} value={id} disabled={id === deal?.stage_id}>
                      {stage.name}
                      {stage.kind !== "open" ? ` (${tv("stageKind", stage.kind)})` : ""}
                    </option>
                  ))}
                </select>
                {fieldError("move_deal.stage_id")}
              </div>
              {lost && (
                <div className={errors["move_deal.loss_reason"] ? "field invalid" : "field"}>
                  <label htmlFor="loss">{t("deals.lossReason")}</label>
                  <input
                    id="loss"
                    maxLength={200}
                    value={draft.lossReason}
                    onChange={(event) => change({ lossReason: event.target.value })}
                  />
                  {fieldError("move_deal.loss_reason")}
                </div>
              )}
            </div>
          )}
          {draft.action === "close-task" && (
            <div className="field">
              <label htmlFor="task">{t("afterCall.task")}</label>
              <select id="task" value={draft.taskId} onChange={(event) => change({ taskId: event.target.value })}>
                {tasks.map((task) => (
                  <option key={task.id} value={task.id}>
                    {task.title} ({tv("kind", task.kind)})
                  </option>
                ))}
              </select>
              {fieldError("close_task_id")}
            </div>
          )}
          {draft.action === "follow-up" && (
            <div className="columns">
              <div className={errors["follow_up.title"] ? "field invalid" : "field"}>
                <label htmlFor="follow-title">{t("afterCall.followUpTitle")}</label>
                <input
                  id="follow-title"
                  maxLength={300}
                  value={draft.followUpTitle}
                  aria-invalid={errors["follow_up.title"] ? true : undefined}
                  onChange={(event) => change({ followUpTitle: event.target.value })}
                />
                {fieldError("follow_up.title")}
              </div>
              <div className={errors["follow_up.due_at"] ? "field invalid" : "field"}>
                <label htmlFor="follow-due">{t("afterCall.followUpDue")}</label>
                <input
                  id="follow-due"
                  type="datetime-local"
                  value={draft.followUpDue}
                  aria-invalid={errors["follow_up.due_at"] ? true : undefined}
                  onChange={(event) => change({ followUpDue: event.target.value })}
                />
                {fieldError("follow_up.due_at")}
              </div>
            </div>
          )}
          <div className="buttons">
            <button type="submit" className="primary" disabled={busy}>
              {busy ? t("form.saving") : t("afterCall.submit")}
            </button>
          </div>
        </form>
      )}
    </section>
  );
}

/** A stored result: the script's stages with their marks, the outcome, who and when. */
export function StoredResult({ result }: { result: CallResult }) {
  const { t, locale } = useI18n();
  const { personName } = useWorkspace();
  return (
    <div className="call-result" data-testid="call-result">
      <p>
        <span className="strong">{t("calls.result")}:</span> {result.outcome}
      </p>
      {result.stages.length > 0 && (
        <ul className="script-marks" aria-label={result.script_name}>
          {result.stages.map((stage, index) => (
            <li key={index} className={stage.checked ? "done" : "skipped"}>
              {stage.checked ? "✓" : "—"} {stage.text}
            </li>
          ))}
        </ul>
      )}
      <p className="muted small">
        {result.user_id ? personName(result.user_id) : ""} {formatDateTime(result.at, locale)}
      </p>
    </div>
  );
}
