import { useCallback, useEffect, useState, type DragEvent, type FormEvent } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { ApiFailure, errorText, fieldErrors, unwrap } from "../api/errors";
import type { Board, BoardStage, Deal, DealCreate } from "../api/types";
import { useWorkspace } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import { formatMoney, formatTotals, moveOnBoard, needsLossReason, neighbourStage } from "../lib/board";
import { useLoad } from "../lib/useLoad";

const PER_STAGE = 50;
const DRAG_TYPE = "application/x-vpbx-deal";

/** The deals of a pipeline as columns by stage: drag a card (or pick a stage) to move it. */
export function DealsBoard() {
  const { t } = useI18n();
  const { crm } = useWorkspace();
  const [params, setParams] = useSearchParams();
  const loadPipelines = useCallback(
    async () => unwrap(await crm.GET("/v1/pipelines", { params: { query: { limit: 100 } } })).items,
    [crm],
  );
  const pipelines = useLoad(loadPipelines, "pipelines");
  const pipelineId = params.get("pipeline") ?? pipelines.data?.[0]?.id ?? "";

  const loadBoard = useCallback(async () => {
    if (pipelineId === "") return null;
    return unwrap(
      await crm.GET("/v1/pipelines/{pipeline_id}/board", {
        params: { path: { pipeline_id: pipelineId }, query: { per_stage: PER_STAGE } },
      }),
    );
  }, [crm, pipelineId]);
  const loaded = useLoad(loadBoard, pipelineId);
  const [board, setBoard] = useState<Board | null>(null);
  useEffect(() => setBoard(loaded.data ?? null), [loaded.data]);

  const [problem, setProblem] = useState<string | null>(null);
  const [losing, setLosing] = useState<{ deal: Deal; stage: BoardStage } | null>(null);
  const [creatingIn, setCreatingIn] = useState<string | null>(null);

  const move = async (deal: Deal, stage: BoardStage, lossReason: string | null) => {
    if (board === null) return;
    setProblem(null);
    setBoard(moveOnBoard(board, deal.id, stage.id)); // shown at once; undone if refused
    try {
      unwrap(
        await crm.PATCH("/v1/deals/{deal_id}", {
          params: { path: { deal_id: deal.id } },
          body: lossReason === null ? { stage_id: stage.id } : { stage_id: stage.id, loss_reason: lossReason },
        }),
      );
    } catch (failure) {
      setProblem(errorText(failure));
    }
    loaded.reload();
  };

  const requestMove = (deal: Deal, stageId: string) => {
    const stage = board?.stages.find((item) => item.id === stageId);
    if (!stage || stage.id === deal.stage_id) return;
    if (needsLossReason(stage)) setLosing({ deal, stage });
    else void move(deal, stage, null);
  };

  const findDeal = (dealId: string): Deal | undefined =>
    board?.stages.flatMap((stage) => stage.deals).find((deal) => deal.id === dealId);

  return (
    <section className="page board-page">
      <div className="page-head">
        <h1>{t("deals.title")}</h1>
        {pipelines.data && pipelines.data.length > 0 && (
          <label className="inline-field">
            {t("deals.pipeline")}{" "}
            <select
              value={pipelineId}
              onChange={(event) => setParams({ pipeline: event.target.value }, { replace: true })}
            >
              {pipelines.data.map((pipeline) => (
                <option key={pipeline.id} value={pipeline.id}>
                  {pipeline.name}
                </option>
              ))}
            </select>
          </label>
        )}
      </div>
      {pipelines.error ? <p className="error">{errorText(pipelines.error)}</p> : null}
      {loaded.error ? <p className="error">{errorText(loaded.error)}</p> : null}
      {problem && (
        <p className="error banner" role="alert">
          {problem}
        </p>
      )}
      {board === null && !loaded.error && <p className="muted">{t("app.loading")}</p>}
      {board && (
        <div className="board" aria-label={board.name}>
          {board.stages.map((stage) => (
            <Column
              key={stage.id}
              stage={stage}
              stages={board.stages}
              creating={creatingIn === stage.id}
              onCreate={() => setCreatingIn(stage.id)}
              onCreated={() => {
                setCreatingIn(null);
                loaded.reload();
              }}
              onCancelCreate={() => setCreatingIn(null)}
              pipelineId={board.pipeline_id}
              onDropDeal={(dealId) => {
                const deal = findDeal(dealId);
                if (deal) requestMove(deal, stage.id);
              }}
              onMove={requestMove}
            />
          ))}
        </div>
      )}
      {losing && (
        <LossPrompt
          deal={losing.deal}
          stage={losing.stage}
          onCancel={() => setLosing(null)}
          onConfirm={(reason) => {
            const { deal, stage } = losing;
            setLosing(null);
            void move(deal, stage, reason);
          }}
        />
      )}
    </section>
  );
}

function Column({
  stage,
  stages,
  pipelineId,
  creating,
  onCreate,
  onCreated,
  onCancelCreate,
  onDropDeal,
  onMove,
}: {
  stage: BoardStage;
  stages: BoardStage[];
  pipelineId: string;
  creating: boolean;
  onCreate(): void;
  onCreated(): void;
  onCancelCreate(): void;
  onDropDeal(dealId: string): void;
  onMove(deal: Deal, stageId: string): void;
}) {
  const { t, tv, locale } = useI18n();
  const [over, setOver] = useState(false);
  const sums = formatTotals(stage.totals, locale);

  const accepts = (event: DragEvent) => event.dataTransfer.types.includes(DRAG_TYPE);
  return (
    <section
      className={`column kind-${stage.kind}${over ? " over" : ""}`}
      data-stage-id={stage.id}
      aria-label={stage.name}
      onDragOver={(event) => {
        if (!accepts(event)) return;
        event.preventDefault();
        event.dataTransfer.dropEffect = "move";
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={(event) => {
        event.preventDefault();
        setOver(false);
        const dealId = event.dataTransfer.getData(DRAG_TYPE);
        if (dealId) onDropDeal(dealId);
      }}
    >
      <header className="column-head">
        <h2>
          {stage.name} <span className="count">{stage.count}</span>
          {stage.kind !== "open" && <span className="tag">{tv("stageKind", stage.kind)}</span>}
        </h2>
        <p className="column-sum muted" data-testid="column-sum">
          {sums || "—"}
        </p>
        {stage.kind === "open" && !creating && (
          <button type="button" className="link small" onClick={onCreate}>
            + {t("deals.new")}
          </button>
        )}
      </header>
      {creating && (
        <NewDealForm
          pipelineId={pipelineId}
          stageId={stage.id}
          contactId={null}
          onCreated={onCreated}
          onCancel={onCancelCreate}
        />
      )}
      <ul className="cards">
        {stage.deals.map((deal) => (
          <DealCard key={deal.id} deal={deal} stages={stages} onMove={onMove} />
        ))}
      </ul>
      {stage.deals.length === 0 && !creating && <p className="muted small">{t("deals.empty")}</p>}
      {stage.count > stage.deals.length && (
        <p className="muted small">{t("deals.more", { count: stage.count - stage.deals.length })}</p>
      )}
    </section>
  );
}

function DealCard({
  deal,
  stages,
  onMove,
}: {
  deal: Deal;
  stages: BoardStage[];
  onMove(deal: Deal, stageId: string): void;
}) {
  const { t, locale } = useI18n();
  const { personName } = useWorkspace();
  const previous = neighbourStage(stages, deal.stage_id, -1);
  const next = neighbourStage(stages, deal.stage_id, 1);
  return (
    <li
      className="deal-card"
      draggable
      data-deal-id={deal.id}
      aria-label={deal.title}
      onDragStart={(event) => {
        event.dataTransfer.setData(DRAG_TYPE, deal.id);
        event.dataTransfer.effectAllowed = "move";
      }}
    >
      <p className="deal-title strong">{deal.title}</p>
      {deal.contact_id && (
        <p>
          <Link to={`/contacts/${deal.contact_id}`}>{deal.contact_name ?? "…"}</Link>
        </p>
      )}
      {deal.company_id && (
        <p className="muted">
          <Link to={`/companies/${deal.company_id}`}>{deal.company_name ?? "…"}</Link>
        </p>
      )}
      <p className="row deal-meta">
        <span className="num">{deal.amount ? formatMoney(deal.amount, deal.currency, locale) : ""}</span>
        <span className="muted small">{personName(deal.owner_user_id)}</span>
      </p>
      {deal.status === "lost" && deal.loss_reason && (
        <p className="muted small">{deal.loss_reason}</p>
      )}
      <div className="row deal-move">
        <button
          type="button"
          className="small"
          disabled={previous === null}
          aria-label={t("deals.moveLeft")}
          title={t("deals.moveLeft")}
          onClick={() => previous && onMove(deal, previous)}
        >
          ←
        </button>
        <select
          aria-label={t("deals.moveTo")}
          value={deal.stage_id}
          onChange={(event) => onMove(deal, event.target.value)}
        >
          {stages.map((stage) => (
            <option key={stage.id} value={stage.id}>
              {stage.name}
            </option>
          ))}
        </select>
        <button
          type="button"
          className="small"
          disabled={next === null}
          aria-label={t("deals.moveRight")}
          title={t("deals.moveRight")}
          onClick={() => next && onMove(deal, next)}
        >
          →
        </button>
      </div>
    </li>
  );
}

function LossPrompt({
  deal,
  stage,
  onCancel,
  onConfirm,
}: {
  deal: Deal;
  stage: BoardStage;
  onCancel(): void;
  onConfirm(reason: string): void;
}) {
  const { t } = useI18n();
  const [reason, setReason] = useState("");
  const [missing, setMissing] = useState(false);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (reason.trim() === "") {
      setMissing(true);
      return;
    }
    onConfirm(reason.trim());
  };
  return (
    <div className="dialog-backdrop">
      <form
        className="dialog form"
        role="dialog"
        aria-modal="true"
        aria-labelledby="loss-title"
        onSubmit={submit}
        onKeyDown={(event) => {
          if (event.key === "Escape") onCancel();
        }}
      >
        <h2 id="loss-title">{t("deals.lossTitle", { title: deal.title, stage: stage.name })}</h2>
        <div className={missing ? "field invalid" : "field"}>
          <label htmlFor="loss-reason">{t("deals.lossReason")}</label>
          <input
            id="loss-reason"
            autoFocus
            maxLength={200}
            value={reason}
            aria-invalid={missing ? true : undefined}
            aria-describedby={missing ? "loss-reason-error" : undefined}
            onChange={(event) => setReason(event.target.value)}
          />
          {missing && (
            <p className="field-error" id="loss-reason-error" role="alert">
              {t("deals.lossRequired")}
            </p>
          )}
        </div>
        <div className="buttons">
          <button type="submit" className="primary">
            {t("deals.confirmMove")}
          </button>
          <button type="button" className="link" onClick={onCancel}>
            {t("form.cancel")}
          </button>
        </div>
      </form>
    </div>
  );
}

/** A deal made on the board (in a stage) or on a contact's card (with the contact). */
export function NewDealForm({
  pipelineId,
  stageId,
  contactId,
  onCreated,
  onCancel,
}: {
  pipelineId: string | null;
  stageId: string | null;
  contactId: string | null;
  onCreated(deal: Deal): void;
  onCancel(): void;
}) {
  const { t } = useI18n();
  const { crm } = useWorkspace();
  const [title, setTitle] = useState("");
  const [amount, setAmount] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [banner, setBanner] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setErrors({});
    setBanner(null);
    try {
      const created = unwrap(
        await crm.POST("/v1/deals", {
          // The generator makes fields with defaults required; left out, the API takes the
          // contact's company and ad channel, which sending "" would overwrite.
          body: {
            title: title.trim(),
            pipeline_id: pipelineId,
            stage_id: stageId,
            ...(contactId ? { contact_id: contactId } : {}),
            amount: amount.trim() === "" ? null : amount.trim().replace(",", "."),
          } as DealCreate,
        }),
      );
      onCreated(created);
    } catch (failure) {
      setBusy(false);
      const fields = failure instanceof ApiFailure ? fieldErrors(failure) : {};
      setErrors(fields);
      if (!fields.title && !fields.amount) setBanner(errorText(failure));
    }
  };

  return (
    <form className="new-deal" aria-label={t("deals.new")} onSubmit={(event) => void submit(event)}>
      <div className={errors.title ? "field invalid" : "field"}>
        <label htmlFor={`deal-title-${stageId ?? contactId}`}>{t("deals.titleField")}</label>
        <input
          id={`deal-title-${stageId ?? contactId}`}
          autoFocus
          maxLength={200}
          value={title}
          aria-invalid={errors.title ? true : undefined}
          onChange={(event) => setTitle(event.target.value)}
        />
        {errors.title && <p className="field-error" role="alert">{errors.title}</p>}
      </div>
      <div className={errors.amount ? "field invalid" : "field"}>
        <label htmlFor={`deal-amount-${stageId ?? contactId}`}>{t("deals.amount")}</label>
        <input
          id={`deal-amount-${stageId ?? contactId}`}
          inputMode="decimal"
          value={amount}
          aria-invalid={errors.amount ? true : undefined}
          onChange={(event) => setAmount(event.target.value)}
        />
        {errors.amount && <p className="field-error" role="alert">{errors.amount}</p>}
      </div>
      {banner && <p className="error small">{banner}</p>}
      <div className="buttons">
        <button type="submit" className="primary small" disabled={busy}>
          {t("deals.create")}
        </button>
        <button type="button" className="link" onClick={onCancel}>
          {t("form.cancel")}
        </button>
      </div>
    </form>
  );
}
