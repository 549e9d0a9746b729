import { useCallback, useState, type FormEvent, type ReactNode } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { ApiFailure, errorText, fieldErrors, unwrap } from "../api/errors";
import type { Company } from "../api/types";
import { useWorkspace } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import { useLoad } from "../lib/useLoad";
import { CATEGORIES } from "./ContactsPage";

interface CompanyDraft {
  name: string;
  phones: string; // comma-separated, as people paste them
  emails: string;
  website: string;
  address: string;
  tax_id: string;
  category: string;
  owner: string;
}

function draftOf(company: Company | null): CompanyDraft {
  return {
    name: company?.name ?? "",
    phones: company?.phones.join(", ") ?? "",
    emails: company?.emails.join(", ") ?? "",
    website: company?.website ?? "",
    address: company?.address ?? "",
    tax_id: company?.tax_id ?? "",
    category: company?.category ?? "client",
    owner: company?.owner_user_id ?? "",
  };
}

function split(text: string): string[] {
  return text
    .split(/[,;\n]/)
    .map((item) => item.trim())
    .filter((item) => item !== "");
}

/** "phones[1]" -> "phones": the list is one input here. */
function onFields(fields: Record<string, string>): Record<string, string> {
  const mapped: Record<string, string> = {};
  for (const [field, message] of Object.entries(fields)) {
    const key = field.replace(/\[\d+\].*$/, "");
    mapped[key] = mapped[key] ? `${mapped[key]}; ${message}` : message;
  }
  return mapped;
}

/** Create a company (/companies/new) or change one (/companies/:id/edit). */
export function CompanyForm() {
  const { companyId } = useParams();
  const { t } = useI18n();
  const { crm } = useWorkspace();
  const load = useCallback(async () => {
    if (companyId === undefined) return null;
    const result = await crm.GET("/v1/companies/{company_id}", {
      params: { path: { company_id: companyId } },
    });
    return { company: unwrap(result), etag: result.response.headers.get("ETag") };
  }, [crm, companyId]);
  const { data, error } = useLoad(load, companyId ?? "new");
  if (error) return <p className="page error">{errorText(error)}</p>;
  if (data === undefined) return <p className="page muted">{t("app.loading")}</p>;
  return (
    <CompanyEditor
      key={companyId ?? "new"}
      companyId={companyId ?? null}
      initial={draftOf(data?.company ?? null)}
      etag={data?.etag ?? null}
      title={data ? t("companyForm.editTitle", { name: data.company.name }) : t("companyForm.newTitle")}
    />
  );
}

function CompanyEditor({
  companyId,
  initial,
  etag,
  title,
}: {
  companyId: string | null;
  initial: CompanyDraft;
  etag: string | null;
  title: string;
}) {
  const { t, tv } = useI18n();
  const { crm, people } = useWorkspace();
  const navigate = useNavigate();
  const [draft, setDraft] = useState(initial);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [banner, setBanner] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const change = (changes: Partial<CompanyDraft>) => setDraft((previous) => ({ ...previous, ...changes }));

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setErrors({});
    setBanner(null);
    const body = {
      name: draft.name.trim(),
      phones: split(draft.phones),
      emails: split(draft.emails),
      website: draft.website.trim(),
      address: draft.address.trim(),
      tax_id: draft.tax_id.trim(),
      category: draft.category,
      owner_user_id: draft.owner === "" ? null : draft.owner,
    };
    try {
      const saved =
        companyId === null
          ? unwrap(await crm.POST("/v1/companies", { body }))
          : unwrap(
              await crm.PATCH("/v1/companies/{company_id}", {
                params: { path: { company_id: companyId }, header: etag ? { "If-Match": etag } : {} },
                body,
              }),
            );
      navigate(`/companies/${saved.id}`);
    } catch (failure) {
      setBusy(false);
      if (failure instanceof ApiFailure && failure.status === 412) {
        setBanner(t("form.changedMeanwhile"));
        return;
      }
      const fields = failure instanceof ApiFailure ? onFields(fieldErrors(failure)) : {};
      setErrors(fields);
      setBanner(Object.keys(fields).length > 0 ? t("form.fixErrors") : errorText(failure));
    }
  };

  const text = (
    name: "name" | "phones" | "emails" | "website" | "address" | "tax_id",
    label: string,
    field: string = name,
  ) => (
    <Field id={`company-${name}`} label={label} error={errors[field]}>
      <input
        id={`company-${name}`}
        value={draft[name]}
        aria-invalid={errors[field] ? true : undefined}
        aria-describedby={errors[field] ? `company-${name}-error` : undefined}
        onChange={(event) => change({ [name]: event.target.value })}
      />
    </Field>
  );

  const sortedPeople = [...people.values()].sort((a, b) => a.name.localeCompare(b.name));
  return (
    <section className="page narrow">
      <p className="crumbs">
        <Link to={companyId ? `/companies/${companyId}` : "/companies"}>{t("form.cancel")}</Link>
      </p>
      <h1>{title}</h1>
      <form className="form" noValidate onSubmit={(event) => void submit(event)}>
        {banner && (
          <p className="error banner" role="alert">
            {banner}
          </p>
        )}
        {text("name", t("companyForm.name"))}
        {text("phones", t("companyForm.phones"))}
        {text("emails", t("companyForm.emails"))}
        <div className="columns">
          {text("website", t("company.website"))}
          {text("tax_id", t("company.taxId"))}
        </div>
        {text("address", t("company.address"))}
        <div className="columns">
          <Field id="company-category" label={t("form.category")} error={errors.category}>
            <select
              id="company-category"
              value={draft.category}
              onChange={(event) => change({ category: event.target.value })}
            >
              {[...new Set([...CATEGORIES, draft.category])].map((value) => (
                <option key={value} value={value}>
                  {tv("category", value)}
                </option>
              ))}
            </select>
          </Field>
          <Field id="company-owner" label={t("form.owner")} error={errors.owner_user_id}>
            <select
              id="company-owner"
              value={draft.owner}
              onChange={(event) => change({ owner: event.target.value })}
            >
              <option value="">{t("contact.noOwner")}</option>
              {sortedPeople.map((person) => (
                <option key={person.id} value={person.id}>
                  {person.name}
                </option>
              ))}
            </select>
          </Field>
        </div>
        <div className="buttons">
          <button type="submit" className="primary" disabled={busy}>
            {busy ? t("form.saving") : t("form.save")}
          </button>
          <Link to={companyId ? `/companies/${companyId}` : "/companies"}>{t("form.cancel")}</Link>
        </div>
      </form>
    </section>
  );
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
