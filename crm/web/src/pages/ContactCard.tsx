import { lazy, Suspense, useCallback } from "react";
import { Link, useParams, useSearchParams } from "react-router-dom";
import { ApiFailure, errorText, unwrap } from "../api/errors";
import type { Contact, CustomValue } from "../api/types";
import { useWorkspace } from "../auth/Workspace";
import { CallTimeline } from "../components/CallTimeline";
import { ContactDeals } from "../components/ContactDeals";
import { NotesPanel } from "../components/NotesPanel";
import { PhoneLink } from "../components/PhoneLink";
import { TaskTable } from "../components/TaskTable";
import { useI18n, type I18n } from "../i18n/I18n";
import { isMessageKey } from "../i18n/language";
import { formatDateTime, formatNumber, humanizeKey } from "../lib/format";
import { useLoad } from "../lib/useLoad";

// The statistics tab draws a chart: its library is loaded when the tab is opened.
const ContactStats = lazy(async () => ({
  default: (await import("../components/ContactStats")).ContactStats,
}));

/** The client card: who they are, whose client, their calls and tasks. */
export function ContactCard() {
  const { contactId = "" } = useParams();
  const { t, tv, locale } = useI18n();
  const { crm, personName, people } = useWorkspace();
  const load = useCallback(
    async () =>
      unwrap(
        await crm.GET("/v1/contacts/{contact_id}", {
          params: { path: { contact_id: contactId } },
        }),
      ),
    [crm, contactId],
  );
  const { data: contact, error } = useLoad(load, contactId);
  // The tab is in the URL, so a link (and the back button) opens the statistics directly.
  const [search, setSearch] = useSearchParams();
  const tab = search.get("tab") === "stats" ? "stats" : "card";

  if (error) {
    const missing = error instanceof ApiFailure && (error.status === 404 || error.status === 422);
    return (
      <section className="page narrow">
        <p>
          <Link to="/contacts">{t("contact.back")}</Link>
        </p>
        <p className="error" role="alert">
          {missing ? t("contact.notFound") : errorText(error)}
        </p>
      </section>
    );
  }
  if (!contact) return <p className="page muted">{t("app.loading")}</p>;

  const custom = Object.entries(contact.custom);
  return (
    <section className="page card" aria-labelledby="contact-name">
      <p className="crumbs">
        <Link to="/contacts">{t("contact.back")}</Link>
      </p>
      <div className="page-head">
        <h1 id="contact-name">
          {contact.name}
          {contact.vip && <span className="tag vip">VIP</span>}
          <span className={`tag category-${contact.category}`}>
            {tv("category", contact.category)}
          </span>
        </h1>
        <Link className="button" to={`/contacts/${contact.id}/edit`}>
          {t("contact.edit")}
        </Link>
      </div>
      <div className="card-columns">
        <dl className="facts" aria-label={contact.name}>
          <dt>{t("contact.phones")}</dt>
          <dd className="phones">
            {contact.phones.length === 0 ? "—" : contact.phones.map((phone) => (
              <PhoneLink
                key={phone}
                phone={phone}
                ownerUserId={contact.owner_user_id}
                ownerName={people.get(contact.owner_user_id ?? "")?.name}
              />
            ))}
          </dd>
          {contact.emails.length > 0 && (
            <>
              <dt>{t("contact.emails")}</dt>
              <dd>
                {contact.emails.map((email) => (
                  <a key={email} href={`mailto:${email}`} className="email">
                    {email}
                  </a>
                ))}
              </dd>
            </>
          )}
          {contact.company_id && (
            <>
              <dt>{t("contact.company")}</dt>
              <dd>
                <CompanyLink companyId={contact.company_id} />
              </dd>
            </>
          )}
          <dt>{t("contact.owner")}</dt>
          <dd>
            {contact.owner_user_id ? (
              personName(contact.owner_user_id)
            ) : (
              <span className="muted">{t("contact.noOwner")}</span>
            )}
          </dd>
          <dt>{t("contact.region")}</dt>
          <dd>{regionText(contact) || "—"}</dd>
          <dt>{t("contact.source")}</dt>
          <dd>{contact.source_label || "—"}</dd>
        </dl>
        {custom.length > 0 && (
          <dl className="facts custom" aria-label={t("contact.custom")}>
            {custom.map(([key, value]) => (
              <CustomField key={key} name={key} value={value} i18n={{ t, locale }} />
            ))}
          </dl>
        )}
      </div>
      <p className="muted small">{t("contact.created", { at: formatDateTime(contact.created_at, locale) })}</p>
      <div className="tabs card-tabs" role="tablist">
        {(["card", "stats"] as const).map((name) => (
          <button
            key={name}
            type="button"
            role="tab"
            aria-selected={tab === name}
            className={tab === name ? "active" : undefined}
            onClick={() => setSearch(name === "card" ? {} : { tab: name }, { replace: true })}
          >
            {t(name === "card" ? "stats.tab.card" : "stats.tab.stats")}
          </button>
        ))}
      </div>
      {tab === "stats" ? (
        <Suspense fallback={<p className="muted">{t("app.loading")}</p>}>
          <ContactStats contactId={contact.id} />
        </Suspense>
      ) : (
        <>
          <ContactDeals contactId={contact.id} />
          <CallTimeline contactId={contact.id} />
          <ContactTasks contactId={contact.id} />
          <NotesPanel contactId={contact.id} />
        </>
      )}
    </section>
  );
}

function regionText(contact: Contact): string {
  if (contact.region_name && contact.region) return `${contact.region_name} (${contact.region})`;
  return contact.region_name || contact.region;
}

function CustomField({
  name,
  value,
  i18n,
}: {
  name: string;
  value: CustomValue;
  i18n: Pick<I18n, "t" | "locale">;
}) {
  const labelKey = `custom.${name}`;
  const label = isMessageKey(labelKey) ? i18n.t(labelKey) : humanizeKey(name);
  let shown: string;
  if (typeof value === "number") shown = formatNumber(value, i18n.locale);
  else if (typeof value === "boolean") shown = i18n.t(value ? "custom.yes" : "custom.no");
  else shown = value ?? "—";
  return (
    <>
      <dt>{label}</dt>
      <dd data-field={name}>{shown}</dd>
    </>
  );
}

function ContactTasks({ contactId }: { contactId: string }) {
  const { t } = useI18n();
  const { crm } = useWorkspace();
  const load = useCallback(
    async () =>
      unwrap(
        await crm.GET("/v1/tasks", {
          params: { query: { contact_id: contactId, limit: 100 } },
        }),
      ),
    [crm, contactId],
  );
  const { data, error, reload } = useLoad(load, contactId);
  return (
    <section className="panel">
      <h2>
        {t("tasks.forContact")}{" "}
        {data && data.total > 0 && <span className="count">{data.total}</span>}
      </h2>
      {error ? <p className="error">{errorText(error)}</p> : null}
      {data && data.items.length === 0 && <p className="muted">{t("tasks.empty")}</p>}
      {data && data.items.length > 0 && <TaskTable tasks={data.items} onChanged={reload} />}
    </section>
  );
}

function CompanyLink({ companyId }: { companyId: string }) {
  const { crm } = useWorkspace();
  const load = useCallback(
    async () =>
      unwrap(
        await crm.GET("/v1/companies/{company_id}", {
          params: { path: { company_id: companyId } },
        }),
      ),
    [crm, companyId],
  );
  const { data } = useLoad(load, companyId);
  return <Link to={`/companies/${companyId}`}>{data?.name ?? "…"}</Link>;
}
