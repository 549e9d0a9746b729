import { useCallback, useState, type FormEvent } from "react";
import { ApiFailure, errorText, fieldErrors, unwrap } from "../api/errors";
import { useWorkspace } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import { formatDateTime } from "../lib/format";
import { useLoad } from "../lib/useLoad";

/** The notes on a contact or a company, newest first, and writing a new one. */
export function NotesPanel({ contactId, companyId }: { contactId?: string; companyId?: string }) {
  const { t, locale } = useI18n();
  const { crm, personName } = useWorkspace();
  const target = contactId ? { contact_id: contactId } : { company_id: companyId ?? "" };
  const load = useCallback(
    async () =>
      unwrap(
        await crm.GET("/v1/notes", {
          params: { query: { contact_id: contactId, company_id: companyId, limit: 100 } },
        }),
      ),
    [crm, contactId, companyId],
  );
  const { data, error, reload } = useLoad(load, `${contactId}/${companyId}`);
  const [text, setText] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setProblem(null);
    try {
      unwrap(await crm.POST("/v1/notes", { body: { ...target, text } }));
      setText("");
      reload();
    } catch (failure) {
      const fields = failure instanceof ApiFailure ? fieldErrors(failure) : {};
      setProblem(fields.text ?? errorText(failure));
    }
    setBusy(false);
  };

  return (
    <section className="panel notes" aria-labelledby="notes-title">
      <h2 id="notes-title">
        {t("notes.title")} {data && data.total > 0 && <span className="count">{data.total}</span>}
      </h2>
      <form className="note-form" onSubmit={(event) => void submit(event)}>
        <label className="visually-hidden" htmlFor="note-text">
          {t("notes.add")}
        </label>
        <textarea
          id="note-text"
          rows={2}
          maxLength={10000}
          placeholder={t("notes.placeholder")}
          value={text}
          aria-invalid={problem ? true : undefined}
          onChange={(event) => setText(event.target.value)}
        />
        <div className="buttons">
          <button type="submit" className="small primary" disabled={busy || text.trim() === ""}>
            {t("notes.add")}
          </button>
          {problem && (
            <span className="error small" role="alert">
              {problem}
            </span>
          )}
        </div>
      </form>
      {error ? <p className="error">{errorText(error)}</p> : null}
      {data && data.items.length === 0 && <p className="muted">{t("notes.empty")}</p>}
      <ul className="note-list">
        {data?.items.map((note) => (
          <li key={note.id}>
            <p className="note-text">{note.text}</p>
            <p className="muted small">
              {note.author_user_id ? personName(note.author_user_id) : t("notes.apiKey")},{" "}
              {formatDateTime(note.created_at, locale)}
            </p>
          </li>
        ))}
      </ul>
    </section>
  );
}
