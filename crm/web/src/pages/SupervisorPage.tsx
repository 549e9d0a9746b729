// /supervisor (supervisors and tenant admins): the tenant's agents with presence and live
// state from the CRM's live feed, handing a client to another manager, and the latest
// calls with their recordings.
import { useCallback, useEffect, useState, type FormEvent } from "react";
import { Link } from "react-router-dom";
import { errorText, unwrap } from "../api/errors";
import type { Contact } from "../api/types";
import { isManager } from "../auth/session";
import { useSession, useWorkspace } from "../auth/Workspace";
import { AudioButton } from "../components/AudioButton";
import { useI18n } from "../i18n/I18n";
import { formatDuration } from "../lib/format";
import { formatPhone } from "../lib/phone";
import { useLoad } from "../lib/useLoad";
import { useLive } from "../live/LiveFeed";

export function SupervisorPage() {
  const { t } = useI18n();
  const { me } = useSession();
  useEffect(() => {
    document.title = `${t("supervisor.title")} — ${t("app.title")}`;
  }, [t]);
  if (!isManager(me)) return <p className="page error">{t("supervisor.onlyManagers")}</p>;
  return (
    <div className="page">
      <h1>{t("supervisor.title")}</h1>
      <AgentBoard />
      <Reassign />
      <RecentCalls />
    </div>
  );
}

function AgentBoard() {
  const { t } = useI18n();
  const { agents, link } = useLive();
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, []);
  return (
    <section className="panel">
      <h2>
        {t("supervisor.agents")} <span className={`dot link-${link}`} title={link} />
      </h2>
      {agents === null ? (
        <p className="muted">{t("app.loading")}</p>
      ) : (
        <table className="grid agents">
          <thead>
            <tr>
              <th>{t("supervisor.agent")}</th>
              <th>{t("presence.label")}</th>
              <th>{t("supervisor.state")}</th>
              <th>{t("supervisor.for")}</th>
            </tr>
          </thead>
          <tbody>
            {agents.map((agent) => (
              <tr key={agent.user_id} data-state={agent.state} data-extension={agent.extension}>
                <td>
                  {agent.name} <span className="muted">({agent.extension})</span>
                </td>
                <td>{t(`presence.${agent.presence as "available"}`)}</td>
                <td>
                  <span className={`tag state-${agent.state}`}>{t(`state.${agent.state}`)}</span>
                </td>
                <td className="num">
                  {agent.state === "wrap-up"
                    ? formatDuration(Math.max(0, Math.ceil((agent.until_ms - now) / 1000)))
                    : agent.since_ms > 0
                      ? formatDuration(Math.max(0, Math.floor((now - agent.since_ms) / 1000)))
                      : ""}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Reassign() {
  const { t } = useI18n();
  const { crm, people, personName } = useWorkspace();
  const [query, setQuery] = useState("");
  const [found, setFound] = useState<Contact[]>([]);
  const [owners, setOwners] = useState<Record<string, string>>({});
  const [message, setMessage] = useState("");

  const search = async (event: FormEvent) => {
    event.preventDefault();
    setMessage("");
    try {
      const page = unwrap(await crm.GET("/v1/contacts", { params: { query: { q: query, limit: 10 } } }));
      setFound(page.items);
    } catch (failure) {
      setMessage(errorText(failure));
    }
  };
  const reassign = async (contact: Contact) => {
    const owner = owners[contact.id] ?? contact.owner_user_id ?? "";
    try {
      const changed = unwrap(
        await crm.PATCH("/v1/contacts/{contact_id}", {
          params: { path: { contact_id: contact.id } },
          body: { owner_user_id: owner || null },
        }),
      );
      setFound((list) => list.map((item) => (item.id === changed.id ? changed : item)));
      setMessage(t("supervisor.reassigned", { name: changed.name, owner: personName(changed.owner_user_id) || "—" }));
    } catch (failure) {
      setMessage(errorText(failure));
    }
  };
  return (
    <section className="panel">
      <h2>{t("supervisor.reassign")}</h2>
      <form onSubmit={(event) => void search(event)}>
        <input
          value={query}
          onChange={(event) => setQuery(event.target.value)}
          placeholder={t("supervisor.searchClient")}
          aria-label={t("supervisor.searchClient")}
        />
        <button type="submit">{t("supervisor.find")}</button>
      </form>
      {found.length > 0 && (
        <table className="grid">
          <tbody>
            {found.map((contact) => (
              <tr key={contact.id}>
                <td>
                  <Link to={`/contacts/${contact.id}`}>{contact.name}</Link>
                </td>
                <td>{personName(contact.owner_user_id) || "—"}</td>
                <td>
                  <select
                    aria-label={t("supervisor.newOwner", { name: contact.name })}
                    value={owners[contact.id] ?? contact.owner_user_id ?? ""}
                    onChange={(event) =>
                      setOwners((all) => ({ ...all, [contact.id]: event.target.value }))
                    }
                  >
                    <option value="">—</option>
                    {[...people.values()].map((person) => (
                      <option key={person.id} value={person.id}>
                        {person.name}
                      </option>
                    ))}
                  </select>
                  <button type="button" onClick={() => void reassign(contact)}>
                    {t("supervisor.assign")}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {message && <p role="status">{message}</p>}
    </section>
  );
}

function RecentCalls() {
  const { t } = useI18n();
  const { crm, personName, extensionName } = useWorkspace();
  const load = useCallback(
    async () => unwrap(await crm.GET("/v1/calls", { params: { query: { limit: 20 } } })),
    [crm],
  );
  const { data, error } = useLoad(load, "recent-calls");
  return (
    <section className="panel">
      <h2>{t("supervisor.recentCalls")}</h2>
      {error ? <p className="error">{errorText(error)}</p> : null}
      {data && data.items.length === 0 && <p className="muted">{t("calls.empty")}</p>}
      {data && data.items.length > 0 && (
        <table className="grid calls">
          <tbody>
            {data.items.map((call) => (
              <tr key={call.call_id}>
                <td>{formatPhone(call.phone)}</td>
                <td>
                  {call.answered_user_id
                    ? personName(call.answered_user_id)
                    : call.answered_by && extensionName(call.answered_by)}
                </td>
                <td className="num">{call.talk_s > 0 ? formatDuration(call.talk_s) : ""}</td>
                <td>
                  {call.recording_url && (
                    <AudioButton path={call.recording_url} label={t("calls.recording")} ms={call.recording_ms} />
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
