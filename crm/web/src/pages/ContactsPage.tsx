import { useCallback, useEffect, useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { ApiFailure, errorText, unwrap } from "../api/errors";
import type { Contact } from "../api/types";
import { useSession, useWorkspace } from "../auth/Workspace";
import { PhoneLink } from "../components/PhoneLink";
import { useI18n } from "../i18n/I18n";
import { contactQuery, phoneDigits } from "../lib/phone";
import { useLoad } from "../lib/useLoad";

export const CATEGORIES = ["client", "supplier", "partner", "other"] as const;
const PAGE = 50;
const SEARCH_DELAY_MS = 250;

interface Found {
  items: Contact[];
  total: number;
}

/** Contacts: search by name or phone, my clients, category, VIP; the filters live in the URL. */
export function ContactsPage() {
  const { t, tv } = useI18n();
  const { crm, config, personName, people } = useWorkspace();
  const { me } = useSession();
  const [params, setParams] = useSearchParams();
  const text = params.get("q") ?? "";
  const mine = params.get("mine") === "1";
  const category = params.get("category") ?? "";
  const vip = params.get("vip") === "1";
  const [typed, setTyped] = useState(text);
  const [more, setMore] = useState<Contact[]>([]);
  const [moreError, setMoreError] = useState<unknown>(null);

  // The URL changed (back, a link): the box shows its search.
  useEffect(() => setTyped(text), [text]);
  // The box updates the URL (and so the search) once typing pauses.
  useEffect(() => {
    if (typed === text) return undefined;
    const timer = window.setTimeout(() => update({ q: typed }), SEARCH_DELAY_MS);
    return () => window.clearTimeout(timer);
  });

  const update = (changes: Record<string, string>) => {
    const next = new URLSearchParams(params);
    for (const [name, value] of Object.entries(changes)) {
      if (value === "") next.delete(name);
      else next.set(name, value);
    }
    setParams(next, { replace: true });
  };

  const fetchPage = useCallback(
    async (offset: number): Promise<Found> => {
      const base = {
        limit: PAGE,
        offset,
        owner_user_id: mine && me.user_id ? me.user_id : undefined,
        category: category || undefined,
        vip: vip ? true : undefined,
      };
      const query = contactQuery(text, config.default_country);
      const result = await crm.GET("/v1/contacts", { params: { query: { ...base, ...query } } });
      if ("phone" in query && result.response.status === 422) {
        // Not a number the API can read whole: look for the digits instead.
        return unwrap(
          await crm.GET("/v1/contacts", {
            params: { query: { ...base, q: phoneDigits(query.phone) } },
          }),
        );
      }
      return unwrap(result);
    },
    [crm, config.default_country, text, mine, me.user_id, category, vip],
  );
  const key = JSON.stringify([text, mine, category, vip]);
  const { data, error, loading } = useLoad(() => fetchPage(0), key);
  useEffect(() => {
    setMore([]);
    setMoreError(null);
  }, [key]);

  const shown = data ? [...data.items, ...more] : [];
  const loadMore = async () => {
    try {
      const page = await fetchPage(shown.length);
      setMore((previous) => [...previous, ...page.items]);
    } catch (failure) {
      setMoreError(failure);
    }
  };

  return (
    <section className="page">
      <div className="page-head">
        <h1>{t("contacts.title")}</h1>
        <Link className="button primary" to="/contacts/new">
          {t("contacts.new")}
        </Link>
      </div>
      <div className="filters">
        <label className="search">
          <span className="visually-hidden">{t("contacts.search")}</span>
          <input
            type="search"
            aria-label={t("contacts.search")}
            placeholder={t("contacts.searchPlaceholder")}
            value={typed}
            onChange={(event) => setTyped(event.target.value)}
            onKeyDown={(event) => {
              if (event.key === "Enter") update({ q: typed });
            }}
          />
        </label>
        <label className="check">
          <input
            type="checkbox"
            checked={mine}
            onChange={(event) => update({ mine: event.target.checked ? "1" : "" })}
          />
          {t("contacts.mine")}
        </label>
        <label className="inline">
          <span className="visually-hidden">{t("contacts.category")}</span>
          <select
            aria-label={t("contacts.category")}
            value={category}
            onChange={(event) => update({ category: event.target.value })}
          >
            <option value="">{t("contacts.anyCategory")}</option>
            {CATEGORIES.map((value) => (
              <option key={value} value={value}>
                {tv("category", value)}
              </option>
            ))}
          </select>
        </label>
        <label className="check">
          <input
            type="checkbox"
            checked={vip}
            onChange={(event) => update({ vip: event.target.checked ? "1" : "" })}
          />
          {t("contacts.vipOnly")}
        </label>
        {data && <span className="muted total">{t("contacts.total", { count: data.total })}</span>}
      </div>
      {error ? (
        <p className="error" role="alert">
          {error instanceof ApiFailure ? error.message : errorText(error)}
        </p>
      ) : null}
      {loading && !data && <p className="muted">{t("app.loading")}</p>}
      {data && shown.length === 0 && <p className="muted empty">{t("contacts.empty")}</p>}
      {shown.length > 0 && (
        <table className={loading ? "grid contacts stale" : "grid contacts"}>
          <thead>
            <tr>
              <th>{t("contacts.col.name")}</th>
              <th>{t("contacts.col.phones")}</th>
              <th>{t("contacts.col.category")}</th>
              <th>{t("contacts.col.owner")}</th>
              <th>{t("contacts.col.region")}</th>
              <th>{t("contacts.col.source")}</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((contact) => (
              <tr key={contact.id}>
                <td>
                  <Link to={`/contacts/${contact.id}`} className="strong">
                    {contact.name}
                  </Link>
                  {contact.vip && <span className="tag vip">VIP</span>}
                </td>
                <td className="phones">
                  {contact.phones.map((phone) => (
                    <PhoneLink
                key={phone}
                phone={phone}
                ownerUserId={contact.owner_user_id}
                ownerName={people.get(contact.owner_user_id ?? "")?.name}
              />
                  ))}
                </td>
                <td>{tv("category", contact.category)}</td>
                <td>{personName(contact.owner_user_id)}</td>
                <td>{contact.region_name || contact.region}</td>
                <td>{contact.source_label}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {data && shown.length < data.total && (
        <p>
          <button type="button" onClick={() => void loadMore()}>
            {t("contacts.more")}
          </button>
          {moreError ? <span className="error small"> {errorText(moreError)}</span> : null}
        </p>
      )}
    </section>
  );
}
