import { useCallback, useEffect, useState } from "react";
import { useSearchParams } from "react-router-dom";
import { errorText, unwrap } from "../api/errors";
import type { Task } from "../api/types";
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
  const names = useContactNames(data?.items ?? []);

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
        <TaskTable tasks={data.items} contactNames={names} onChanged={reload} />
      )}
    </section>
  );
}

/** Names of the tasks' contacts, asked once per contact and kept while the page is open. */
function useContactNames(tasks: Task[]): ReadonlyMap<string, string> {
  const { crm } = useWorkspace();
  const [names, setNames] = useState<ReadonlyMap<string, string>>(new Map());
  const wanted = [...new Set(tasks.map((task) => task.contact_id).filter(isString))]
    .filter((id) => !names.has(id))
    .sort();
  const key = wanted.join(",");
  useEffect(() => {
    if (key === "") return undefined;
    let current = true;
    void Promise.all(
      key.split(",").map(async (id) => {
        const found = await crm.GET("/v1/contacts/{contact_id}", {
          params: { path: { contact_id: id } },
        });
        return [id, found.data?.name ?? "—"] as const;
      }),
    ).then((pairs) => {
      if (current) setNames((previous) => new Map([...previous, ...pairs]));
    });
    return () => {
      current = false;
    };
  }, [crm, key]);
  return names;
}

function isString(value: string | null): value is string {
  return value !== null;
}
