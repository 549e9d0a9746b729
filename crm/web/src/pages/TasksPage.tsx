import { useCallback } from "react";
import { useSearchParams } from "react-router-dom";
import { errorText, unwrap } from "../api/errors";
import { isManager } from "../auth/session";
import { useSession, useWorkspace } from "../auth/Workspace";
import { TaskTable } from "../components/TaskTable";
import { useI18n } from "../i18n/I18n";
import { useLoad } from "../lib/useLoad";

/** My tasks (everybody's for supervisors and admins): open first by due time, overdue marked. */
export function TasksPage() {
  const { t } = useI18n();
  const { crm } = useWorkspace();
  const { me } = useSession();
  const [params, setParams] = useSearchParams();
  const manager = isManager(me);
  const all = manager && params.get("scope") === "all";
  const status = params.get("status") === "done" ? "done" : "open";
  const overdue = status === "open" && params.get("overdue") === "1";

  const update = (changes: Record<string, string>) => {
    const next = new URLSearchParams(params);
    for (const [name, value] of Object.entries(changes)) {
      if (value === "") next.delete(name);
      else next.set(name, value);
    }
    setParams(next, { replace: true });
  };

  const load = useCallback(
    async () =>
      unwrap(
        await crm.GET("/v1/tasks", {
          params: {
            query: {
              mine: all ? undefined : true,
              status,
              overdue: overdue ? true : undefined,
              limit: 200,
            },
          },
        }),
      ),
    [crm, all, status, overdue],
  );
  const { data, error, loading, reload } = useLoad(load, JSON.stringify([all, status, overdue]));

  return (
    <section className="page">
      <div className="page-head">
        <h1>{t("tasks.title")}</h1>
      </div>
      <div className="filters">
        {manager && (
          <div className="tabs" role="tablist">
            <button
              type="button"
              role="tab"
              aria-selected={!all}
              className={!all ? "active" : ""}
              onClick={() => update({ scope: "" })}
            >
              {t("tasks.mine")}
            </button>
            <button
              type="button"
              role="tab"
              aria-selected={all}
              className={all ? "active" : ""}
              onClick={() => update({ scope: "all" })}
            >
              {t("tasks.all")}
            </button>
          </div>
        )}
        <div className="tabs" role="tablist">
          <button
            type="button"
            role="tab"
            aria-selected={status === "open"}
            className={status === "open" ? "active" : ""}
            onClick={() => update({ status: "" })}
          >
            {t("tasks.open")}
          </button>
          <button
            type="button"
            role="tab"
            aria-selected={status === "done"}
            className={status === "done" ? "active" : ""}
            onClick={() => update({ status: "done", overdue: "" })}
          >
            {t("tasks.done")}
          </button>
        </div>
        {status === "open" && (
          <label className="check">
            <input
              type="checkbox"
              checked={overdue}
              onChange={(event) => update({ overdue: event.target.checked ? "1" : "" })}
            />
            {t("tasks.overdueOnly")}
          </label>
        )}
        {data && <span className="muted total">{data.total}</span>}
      </div>
      {error ? <p className="error">{errorText(error)}</p> : null}
      {loading && !data && <p className="muted">{t("app.loading")}</p>}
      {data && data.items.length === 0 && <p className="muted empty">{t("tasks.empty")}</p>}
      {data && data.items.length > 0 && (
        <TaskTable tasks={data.items} showContact onChanged={reload} />
      )}
    </section>
  );
}
