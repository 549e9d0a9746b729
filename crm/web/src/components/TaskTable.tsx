import { Fragment, useState, type FormEvent } from "react";
import { Link } from "react-router-dom";
import { errorText, unwrap } from "../api/errors";
import type { Task } from "../api/types";
import { useWorkspace } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import { formatDateTime, isOverdue } from "../lib/format";

interface Props {
  tasks: Task[];
  /** Show the contact column (its name comes with each task). */
  showContact?: boolean;
  /** Called after a task was closed, to load the list again. */
  onChanged(): void;
}

/** Tasks with their due time (overdue ones marked), and closing one with its result. */
export function TaskTable({ tasks, showContact = false, onChanged }: Props) {
  const { t, tv, locale } = useI18n();
  const { personName } = useWorkspace();
  const [closing, setClosing] = useState<string | null>(null);
  const now = new Date();
  const columns = showContact ? 7 : 6;

  return (
    <table className="grid tasks">
      <thead>
        <tr>
          <th>{t("tasks.col.due")}</th>
          <th>{t("tasks.col.title")}</th>
          <th>{t("tasks.col.kind")}</th>
          {showContact && <th>{t("tasks.col.contact")}</th>}
          <th>{t("tasks.col.assignee")}</th>
          <th>{t("tasks.col.result")}</th>
          <th />
        </tr>
      </thead>
      <tbody>
        {tasks.map((task) => {
          const overdue = isOverdue(task, now);
          return (
            <Fragment key={task.id}>
              <tr className={overdue ? "overdue" : undefined} data-task-id={task.id}>
                <td className="nowrap">
                  {task.due_at ? formatDateTime(task.due_at, locale) : (
                    <span className="muted">{t("tasks.noDue")}</span>
                  )}
                  {overdue && <span className="tag danger">{t("tasks.overdue")}</span>}
                </td>
                <td>{task.title}</td>
                <td className="nowrap">
                  <span className={`tag kind-${task.kind}`}>{tv("kind", task.kind)}</span>
                </td>
                {showContact && (
                  <td>
                    {task.contact_id && (
                      <Link to={`/contacts/${task.contact_id}`}>{task.contact_name ?? "…"}</Link>
                    )}
                  </td>
                )}
                <td>{personName(task.assignee_user_id)}</td>
                <td>
                  {task.status !== "open" && (
                    <span className="tag">{tv("status", task.status)}</span>
                  )}{" "}
                  {task.result}
                </td>
                <td className="nowrap actions">
                  {task.status === "open" && closing !== task.id && (
                    <button type="button" className="small" onClick={() => setClosing(task.id)}>
                      {t("tasks.close")}
                    </button>
                  )}
                </td>
              </tr>
              {closing === task.id && (
                <tr className="closing">
                  <td colSpan={columns}>
                    <CloseTask
                      task={task}
                      onDone={() => {
                        setClosing(null);
                        onChanged();
                      }}
                      onCancel={() => setClosing(null)}
                    />
                  </td>
                </tr>
              )}
            </Fragment>
          );
        })}
      </tbody>
    </table>
  );
}

function CloseTask({
  task,
  onDone,
  onCancel,
}: {
  task: Task;
  onDone(): void;
  onCancel(): void;
}) {
  const { t } = useI18n();
  const { crm } = useWorkspace();
  const [result, setResult] = useState("");
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);

  const close = async (status: "done" | "cancelled") => {
    setBusy(true);
    setProblem(null);
    try {
      unwrap(
        await crm.PATCH("/v1/tasks/{task_id}", {
          params: { path: { task_id: task.id } },
          body: { status, result: result.trim() },
        }),
      );
      onDone();
    } catch (error) {
      setProblem(errorText(error));
      setBusy(false);
    }
  };

  const submit = (event: FormEvent) => {
    event.preventDefault();
    void close("done");
  };

  return (
    <form className="close-task" onSubmit={submit}>
      <label>
        {t("tasks.resultLabel")}
        <textarea
          rows={2}
          maxLength={2000}
          value={result}
          autoFocus
          onChange={(event) => setResult(event.target.value)}
        />
      </label>
      <div className="buttons">
        <button type="submit" className="primary small" disabled={busy}>
          {t("tasks.markDone")}
        </button>
        <button type="button" className="small" disabled={busy} onClick={() => void close("cancelled")}>
          {t("tasks.cancelTask")}
        </button>
        <button type="button" className="link" onClick={onCancel}>
          {t("tasks.back")}
        </button>
        {problem && <span className="error small">{problem}</span>}
      </div>
    </form>
  );
}
