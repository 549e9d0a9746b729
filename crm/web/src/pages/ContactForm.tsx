import { useCallback, useEffect, useState, type FormEvent, type ReactNode } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { ApiFailure, errorText, fieldErrors, unwrap } from "../api/errors";
import { useWorkspace } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import { draftOf, emptyDraft, onInputs, prepare, type Draft } from "../lib/contactDraft";
import { useLoad } from "../lib/useLoad";
import { CATEGORIES } from "./ContactsPage";

/** Create a contact (/contacts/new) or change one (/contacts/:id/edit). */
export function ContactForm() {
  const { contactId } = useParams();
  const { t } = useI18n();
  const { crm } = useWorkspace();
  const load = useCallback(async () => {
    if (contactId === undefined) return null;
    const result = await crm.GET("/v1/contacts/{contact_id}", {
      params: { path: { contact_id: contactId } },
    });
    return { contact: unwrap(result), etag: result.response.headers.get("ETag") };
  }, [crm, contactId]);
  const { data, error } = useLoad(load, contactId ?? "new");

  if (error) return <p className="page error">{errorText(error)}</p>;
  if (data === undefined) return <p className="page muted">{t("app.loading")}</p>;
  return (
    <ContactEditor
      key={contactId ?? "new"}
      contactId={contactId ?? null}
      initial={data ? draftOf(data.contact) : emptyDraft()}
      etag={data?.etag ?? null}
      title={data ? t("form.editTitle", { name: data.contact.name }) : t("form.newTitle")}
    />
  );
}

function ContactEditor({
  contactId,
  initial,
  etag,
  title,
}: {
  contactId: string | null;
  initial: Draft;
  etag: string | null;
  title: string;
}) {
  const { t, tv } = useI18n();
  const { crm, people } = useWorkspace();
  const navigate = useNavigate();
  const [draft, setDraft] = useState<Draft>(initial);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [banner, setBanner] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    document.title = `${title} — ${t("app.title")}`;
  }, [title, t]);

  const change = (changes: Partial<Draft>) => setDraft((previous) => ({ ...previous, ...changes }));
  const setListItem = (list: "phones" | "emails", index: number, value: string) =>
    setDraft((previous) => ({
      ...previous,
      [list]: previous[list].map((item, at) => (at === index ? value : item)),
    }));

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const prepared = prepare(draft, (key) => t("form.duplicateField", { key }));
    if (Object.keys(prepared.problems).length > 0) {
      setErrors(prepared.problems);
      setBanner(t("form.fixErrors"));
      return;
    }
    setBusy(true);
    setErrors({});
    setBanner(null);
    try {
      const saved =
        contactId === null
          ? unwrap(await crm.POST("/v1/contacts", { body: prepared.body }))
          : unwrap(
              await crm.PATCH("/v1/contacts/{contact_id}", {
                params: {
                  path: { contact_id: contactId },
                  header: etag ? { "If-Match": etag } : {},
                },
                body: prepared.body,
              }),
            );
      navigate(`/contacts/${saved.id}`);
    } catch (failure) {
      setBusy(false);
      if (failure instanceof ApiFailure && failure.status === 412) {
        setBanner(t("form.changedMeanwhile"));
        return;
      }
      const fields = failure instanceof ApiFailure ? onInputs(fieldErrors(failure), prepared) : {};
      setErrors(fields);
      const shown = Object.keys(fields).filter(isFormField);
      const unshown = Object.keys(fields).filter((field) => !isFormField(field));
      setBanner(
        shown.length > 0 && unshown.length === 0 ? t("form.fixErrors") : errorText(failure),
      );
    }
  };

  const sortedPeople = [...people.values()].sort((a, b) => a.name.localeCompare(b.name));
  const categories: string[] = CATEGORIES.includes(draft.category as (typeof CATEGORIES)[number])
    ? [...CATEGORIES]
    : [...CATEGORIES, draft.category];

  return (
    <section className="page narrow">
      <p className="crumbs">
        <Link to={contactId ? `/contacts/${contactId}` : "/contacts"}>{t("form.cancel")}</Link>
      </p>
      <h1>{title}</h1>
      <form className="form" noValidate onSubmit={(event) => void submit(event)}>
        {banner && (
          <p className="error banner" role="alert">
            {banner}
          </p>
        )}
        <Field id="name" label={t("form.name")} error={errors.name}>
          <input
            id="name"
            required
            maxLength={200}
            value={draft.name}
            aria-invalid={errors.name ? true : undefined}
            aria-describedby={errors.name ? "name-error" : undefined}
            onChange={(event) => change({ name: event.target.value })}
          />
        </Field>

        <fieldset>
          <legend>{t("form.phones")}</legend>
          {draft.phones.map((phone, index) => {
            const id = `phones-${index}`;
            const error = errors[`phones[${index}]`];
            return (
              <Field key={index} id={id} label={t("form.phone", { n: index + 1 })} error={error}>
                <div className="row">
                  <input
                    id={id}
                    type="tel"
                    inputMode="tel"
                    value={phone}
                    placeholder="+7 916 123-45-67"
                    aria-invalid={error ? true : undefined}
                    aria-describedby={error ? `${id}-error` : undefined}
                    onChange={(event) => setListItem("phones", index, event.target.value)}
                  />
                  {draft.phones.length > 1 && (
                    <button
                      type="button"
                      className="link"
                      onClick={() => change({ phones: draft.phones.filter((_, at) => at !== index) })}
                    >
                      {t("form.remove")}
                    </button>
                  )}
                </div>
              </Field>
            );
          })}
          {errors.phones && <p className="field-error">{errors.phones}</p>}
          <button
            type="button"
            className="link"
            disabled={draft.phones.length >= 10}
            onClick={() => change({ phones: [...draft.phones, ""] })}
          >
            {t("form.addPhone")}
          </button>
        </fieldset>

        <fieldset>
          <legend>{t("form.emails")}</legend>
          {draft.emails.map((email, index) => {
            const id = `emails-${index}`;
            const error = errors[`emails[${index}]`];
            return (
              <Field key={index} id={id} label={t("form.email", { n: index + 1 })} error={error}>
                <div className="row">
                  <input
                    id={id}
                    type="email"
                    value={email}
                    aria-invalid={error ? true : undefined}
                    aria-describedby={error ? `${id}-error` : undefined}
                    onChange={(event) => setListItem("emails", index, event.target.value)}
                  />
                  <button
                    type="button"
                    className="link"
                    onClick={() => change({ emails: draft.emails.filter((_, at) => at !== index) })}
                  >
                    {t("form.remove")}
                  </button>
                </div>
              </Field>
            );
          })}
          {errors.emails && <p className="field-error">{errors.emails}</p>}
          <button
            type="button"
            className="link"
            disabled={draft.emails.length >= 10}
            onClick={() => change({ emails: [...draft.emails, ""] })}
          >
            {t("form.addEmail")}
          </button>
        </fieldset>

        <div className="columns">
          <Field id="category" label={t("form.category")} error={errors.category}>
            <select
              id="category"
              value={draft.category}
              onChange={(event) => change({ category: event.target.value })}
            >
              {categories.map((value) => (
                <option key={value} value={value}>
                  {tv("category", value)}
                </option>
              ))}
            </select>
          </Field>
          <Field id="owner" label={t("form.owner")} error={errors.owner_user_id}>
            <select
              id="owner"
              value={draft.owner}
              onChange={(event) => change({ owner: event.target.value })}
            >
              <option value="">{t("contact.noOwner")}</option>
              {sortedPeople.map((person) => (
                <option key={person.id} value={person.id}>
                  {person.extension ? `${person.name} (${person.extension})` : person.name}
                </option>
              ))}
              {draft.owner && !people.has(draft.owner) && (
                <option value={draft.owner}>{draft.owner}</option>
              )}
            </select>
          </Field>
        </div>

        <div className="columns">
          <Field id="source" label={t("form.source")} error={errors.source_label}>
            <input
              id="source"
              maxLength={63}
              value={draft.source}
              onChange={(event) => change({ source: event.target.value })}
            />
          </Field>
          <label className="check vip-check">
            <input
              type="checkbox"
              checked={draft.vip}
              onChange={(event) => change({ vip: event.target.checked })}
            />
            {t("form.vip")}
          </label>
        </div>

        <fieldset>
          <legend>{t("form.custom")}</legend>
          <p className="muted small">{t("form.customHint")}</p>
          {draft.custom.map((row, index) => (
            <div className="row custom-row" key={index}>
              <input
                aria-label={`${t("form.customKey")} ${index + 1}`}
                placeholder={t("form.customKey")}
                value={row.key}
                onChange={(event) =>
                  change({
                    custom: draft.custom.map((item, at) =>
                      at === index ? { ...item, key: event.target.value } : item,
                    ),
                  })
                }
              />
              <input
                aria-label={`${t("form.customValue")} ${index + 1}`}
                placeholder={t("form.customValue")}
                value={row.value}
                onChange={(event) =>
                  change({
                    custom: draft.custom.map((item, at) =>
                      at === index ? { ...item, value: event.target.value } : item,
                    ),
                  })
                }
              />
              <button
                type="button"
                className="link"
                onClick={() => change({ custom: draft.custom.filter((_, at) => at !== index) })}
              >
                {t("form.remove")}
              </button>
            </div>
          ))}
          {errors.custom && (
            <p className="field-error" role="alert">
              {errors.custom}
            </p>
          )}
          <button
            type="button"
            className="link"
            onClick={() => change({ custom: [...draft.custom, { key: "", value: "" }] })}
          >
            {t("form.addCustom")}
          </button>
        </fieldset>

        <div className="buttons">
          <button type="submit" className="primary" disabled={busy}>
            {busy ? t("form.saving") : t("form.save")}
          </button>
          <Link to={contactId ? `/contacts/${contactId}` : "/contacts"}>{t("form.cancel")}</Link>
        </div>
      </form>
    </section>
  );
}

const FORM_FIELDS = /^(name|phones(\[\d+\])?|emails(\[\d+\])?|category|owner_user_id|source_label|custom)$/;

function isFormField(field: string): boolean {
  return FORM_FIELDS.test(field);
}

function Field({
  id,
  label,
  error,
  children,
}: {
  id: string;
  label: string;
  error: string | undefined;
  children: ReactNode;
}) {
  return (
    <div className={error ? "field invalid" : "field"}>
      <label htmlFor={id}>{label}</label>
      {children}
      {error && (
        <p className="field-error" id={`${id}-error`} role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
