import { useCallback } from "react";
import { Link, useParams } from "react-router-dom";
import { ApiFailure, errorText, unwrap } from "../api/errors";
import { useWorkspace } from "../auth/Workspace";
import { ContactDeals } from "../components/ContactDeals";
import { NotesPanel } from "../components/NotesPanel";
import { PhoneLink } from "../components/PhoneLink";
import { useI18n } from "../i18n/I18n";
import { useLoad } from "../lib/useLoad";

/** A company: its facts, its people, its deals and the notes on it. */
export function CompanyCard() {
  const { companyId = "" } = useParams();
  const { t, tv } = useI18n();
  const { crm, personName } = useWorkspace();
  const load = useCallback(async () => {
    const path = { company_id: companyId };
    const [company, contacts] = await Promise.all([
      crm.GET("/v1/companies/{company_id}", { params: { path } }),
      crm.GET("/v1/companies/{company_id}/contacts", { params: { path, query: { limit: 200 } } }),
    ]);
    return { company: unwrap(company), contacts: unwrap(contacts) };
  }, [crm, companyId]);
  const { data, error } = useLoad(load, companyId);

  if (error) {
    const missing = error instanceof ApiFailure && (error.status === 404 || error.status === 422);
    return (
      <section className="page narrow">
        <p>
          <Link to="/companies">{t("company.back")}</Link>
        </p>
        <p className="error" role="alert">
          {missing ? t("company.notFound") : errorText(error)}
        </p>
      </section>
    );
  }
  if (!data) return <p className="page muted">{t("app.loading")}</p>;
  const { company, contacts } = data;
  return (
    <section className="page card" aria-labelledby="company-name">
      <p className="crumbs">
        <Link to="/companies">{t("company.back")}</Link>
      </p>
      <div className="page-head">
        <h1 id="company-name">
          {company.name}
          <span className={`tag category-${company.category}`}>{tv("category", company.category)}</span>
        </h1>
        <Link className="button" to={`/companies/${company.id}/edit`}>
          {t("contact.edit")}
        </Link>
      </div>
      <div className="card-columns">
        <dl className="facts" aria-label={company.name}>
          <dt>{t("contact.phones")}</dt>
          <dd className="phones">
            {company.phones.length === 0 ? "—" : company.phones.map((phone) => (
              <PhoneLink key={phone} phone={phone} />
            ))}
          </dd>
          {company.emails.length > 0 && (
            <>
              <dt>{t("contact.emails")}</dt>
              <dd>
                {company.emails.map((email) => (
                  <a key={email} href={`mailto:${email}`} className="email">
                    {email}
                  </a>
                ))}
              </dd>
            </>
          )}
          <dt>{t("company.website")}</dt>
          <dd>{company.website || "—"}</dd>
          <dt>{t("company.address")}</dt>
          <dd>{company.address || "—"}</dd>
          <dt>{t("company.taxId")}</dt>
          <dd>{company.tax_id || "—"}</dd>
          <dt>{t("contact.owner")}</dt>
          <dd>
            {company.owner_user_id ? (
              personName(company.owner_user_id)
            ) : (
              <span className="muted">{t("contact.noOwner")}</span>
            )}
          </dd>
        </dl>
      </div>
      <section className="panel" aria-labelledby="company-contacts">
        <h2 id="company-contacts">
          {t("company.contacts")}{" "}
          {contacts.total > 0 && <span className="count">{contacts.total}</span>}
        </h2>
        {contacts.items.length === 0 && <p className="muted">{t("company.noContacts")}</p>}
        {contacts.items.length > 0 && (
          <table className="grid company-contacts">
            <tbody>
              {contacts.items.map((contact) => (
                <tr key={contact.id}>
                  <td>
                    <Link to={`/contacts/${contact.id}`}>{contact.name}</Link>
                  </td>
                  <td className="phones">
                    {contact.phones.map((phone) => (
                      <PhoneLink key={phone} phone={phone} />
                    ))}
                  </td>
                  <td className="muted">{personName(contact.owner_user_id)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <ContactDeals companyId={company.id} />
      <NotesPanel companyId={company.id} />
    </section>
  );
}
