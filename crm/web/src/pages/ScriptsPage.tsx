import { useCallback, useState, type FormEvent } from "react";
import { ApiFailure, errorText, fieldErrors, unwrap } from "../api/errors";
import type { CallScript } from "../api/types";
import { isManager } from "../auth/session";
import { useSession, useWorkspace } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import { formatPhone } from "../lib/phone";
import { useLoad } from "../lib/useLoad";

/** Call scripts: everybody reads them; supervisors and admins write them. */
export function ScriptsPage() {
  const { t } = useI18n();
  const { crm } = useWorkspace();
  const { me } = useSession();
  const manager = isManager(me);
  const load = useCallback(async () => unwrap(await crm.GET("/v1/call-scripts")).items, [crm]);
  const { data, error, reload } = useLoad(load, "scripts");
  const [editing, setEditing] = useState<CallScript | "new" | null>(null);

  return (
    <section className="page narrow">
      <div className="page-head">
        <h1>{t("scripts.title")}</h1>
        {manager && editing === null && (
          <button type="button" className="primary" onClick={() => setEditing("new")}>
            {t("scripts.new")}
          </button>
        )}
      </div>
      <p className="muted">{t("scripts.hint")}</p>
      {error ? <p className="error">{errorText(error)}</p> : null}
      {editing !== null && (
        <ScriptForm
          script={editing === "new" ? null : editing}
          onSaved={() => {
            setEditing(null);
            reload();
          }}
          onCancel={() => setEditing(null)}
        />
      )}
      {data && data.length === 0 && <p className="muted empty">{t("scripts.empty")}</p>}
      {data?.map((script) => (
        <section className="panel script" key={script.id} aria-label={script.name}>
          <div className="page-head">
            <h2>{script.name}</h2>
            {manager && editing === null && (
              <button type="button" className="small" onClick={() => setEditing(script)}>
                {t("contact.edit")}
              </button>
            )}
          </div>
          <p className="muted small">
            {[...script.numbers.map((number) => formatPhone(number)), ...script.labels].join(", ")}
          </p>
          <ol>
            {script.stages.map((stage, index) => (
              <li key={index}>{stage}</li>
            ))}
          </ol>
        </section>
      ))}
    </section>
  );
}

function lines(text: string, separator: RegExp): string[] {
  return text
    .split(separator)
    .map((item) => item.trim())
    .filter((item) => item !== "");
}

function ScriptForm({
  script,
  onSaved,
  onCancel,
}: {
  script: CallScript | null;
  onSaved(): void;
  onCancel(): void;
}) {
  const { t } = useI18n();
  const { crm } = useWorkspace();
  const [name, setName] = useState(script?.name ?? "");
  const [numbers, setNumbers] = useState(script?.numbers.join(", ") ?? "");
  const [labels, setLabels] = useState(script?.labels.join(", ") ?? "");
  const [stages, setStages] = useState(script?.stages.join("\n") ?? "");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [banner, setBanner] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setErrors({});
    setBanner(null);
    const body = {
      name: name.trim(),
      numbers: lines(numbers, /[,;\n]/),
      labels: lines(labels, /[,;\n]/),
      stages: lines(stages, /\n/),
    };
    try {
      if (script === null) unwrap(await crm.POST("/v1/call-scripts", { body }));
      else {
        unwrap(
          await crm.PATCH("/v1/call-scripts/{script_id}", {
            params: { path: { script_id: script.id } },
            body,
          }),
        );
      }
      onSaved();
    } catch (failure) {
      setBusy(false);
      const fields: Record<string, string> = {};
      if (failure instanceof ApiFailure) {
        for (const [field, message] of Object.entries(fieldErrors(failure))) {
          const key = field.replace(/[[.].*$/, ""); // "numbers[1]" -> the numbers input
          fields[key] = fields[key] ? `${fields[key]}; ${message}` : message;
        }
      }
      setErrors(fields);
      setBanner(Object.keys(fields).length > 0 ? t("form.fixErrors") : errorText(failure));
    }
  };

  const field = (
    id: "name" | "numbers" | "labels" | "stages",
    label: string,
    value: string,
    set: (value: string) => void,
  ) => (
    <div className={errors[id] ? "field invalid" : "field"}>
      <label htmlFor={`script-${id}`}>{label}</label>
      {id === "stages" ? (
        <textarea
          id={`script-${id}`}
          rows={5}
          value={value}
          aria-invalid={errors[id] ? true : undefined}
          onChange={(event) => set(event.target.value)}
        />
      ) : (
        <input
          id={`script-${id}`}
          value={value}
          aria-invalid={errors[id] ? true : undefined}
          onChange={(event) => set(event.target.value)}
        />
      )}
      {errors[id] && (
        <p className="field-error" id={`script-${id}-error`} role="alert">
          {errors[id]}
        </p>
      )}
    </div>
  );

  return (
    <form className="form" noValidate onSubmit={(event) => void submit(event)}>
      {banner && (
        <p className="error banner" role="alert">
          {banner}
        </p>
      )}
      {field("name", t("scripts.name"), name, setName)}
      {field("numbers", t("scripts.numbers"), numbers, setNumbers)}
      {field("labels", t("scripts.labels"), labels, setLabels)}
      {field("stages", t("scripts.stages"), stages, setStages)}
      <div className="buttons">
        <button type="submit" className="primary" disabled={busy}>
          {busy ? t("form.saving") : t("form.save")}
        </button>
        <button type="button" className="link" onClick={onCancel}>
          {t("form.cancel")}
        </button>
      </div>
    </form>
  );
}
