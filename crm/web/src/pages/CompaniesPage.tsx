import { useCallback, useEffect, useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { errorText, unwrap } from "../api/errors";
import { useWorkspace } from "../auth/Workspace";
import { PhoneLink } from "../components/PhoneLink";
import { useI18n } from "../i18n/I18n";
import { useLoad } from "../lib/useLoad";

const PAGE = 50;

/** The tenant's companies, found by a part of the name or the tax id (ИНН). */
export function CompaniesPage() {
  const { t, tv } = useI18n();
  const { crm, personName } = useWorkspace();
  const [params, setParams] = useSearchParams();
  const query = params.get("q") ?? "";
  const [typed, setTyped] = useState(query);
  const [limit, setLimit] = useState(PAGE);

  // Searching as one types, a moment after the last key.
  useEffect(() => {
    const timer = window.setTimeout(() => {
      if (typed.trim() !== query) {
        setParams(typed.trim() ? { q: typed.trim() } : {}, { replace: true });
        setLimit(PAGE);
      }
    }, 250);
    return () => window.clearTimeout(timer);
  }, [typed, query, setParams]);

  const load = useCallback(
    async () =>
      unwrap(
        await crm.GET("/v1/companies", { params: { query: { q: query || undefined, limit } } }),
      ),
    [crm, query, limit],
  );
  const { data, error, loading } = useLoad(load, `${query}/${limit}`);

  return (
    <section className="page">
      <div className="page-head">
        <h1>{t("companies.title")}</h1>
        <Link className="button primary" to="/companies/new">
          {t("companies.new")}
        </Link>
      </div>
      <div className="filters">
        <label className="search">
          <span className="visually-hidden">{t("companies.search")}</span>
          <input
            type="search"
            aria-label={t("companies.search")}
            placeholder={t("companies.searchPlaceholder")}
            value={typed}
            onChange={(event) => setTyped(event.target.value)}
          />
        </label>
        {data && <span className="muted total">{t("contacts.total", { count: data.total })}</span>}
      </div>
      {error ? <p className="error">{errorText(error)}</p> : null}
      {loading && !data && <p className="muted">{t("app.loading")}</p>}
      {data && data.items.length === 0 && <p className="muted empty">{t("companies.empty")}</p>}
      {data && data.items.length > 0 && (
        <table className={loading ? "grid companies stale" : "grid companies"}>
          <thead>
            <tr>
              <th>{t("companies.col.name")}</th>
              <th>{t("companies.col.phones")}</th>
              <th>{t("companies.col.taxId")}</th>
              <th>{t("companies.col.category")}</th>
              <th>{t("companies.col.owner")}</th>
            </tr>
          </thead>
          <tbody>
            {data.items.map((company) => (
              <tr key={company.id}>
                <td>
                  <Link to={`/companies/${company.id}`}>{company.name}</Link>
                </td>
                <td className="phones">
                  {company.phones.map((phone) => (
                    <PhoneLink key={phone} phone={phone} />
                  ))}
                </td>
                <td className="num">{company.tax_id}</td>
                <td>{tv("category", company.category)}</td>
                <td>{personName(company.owner_user_id)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {data && data.total > data.items.length && (
        <p>
          <button type="button" onClick={() => setLimit(limit + PAGE)}>
            {t("contacts.more")}
          </button>
        </p>
      )}
    </section>
  );
}
