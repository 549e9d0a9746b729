// /supervisor (supervisors and tenant admins): the live board from the CRM's live feed (the
// tenant's calls in progress in every city, callers waiting in each queue, agents with
// presence and state, all with running timers), handing a client to another manager, and
// the latest calls with their recordings.
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
import { elapsedS, queueWaits, type BoardCallRow } from "../live/protocol";

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
      <QueuesBoard />
      <CallsBoard />
      <AgentBoard />
      <Reassign />
      <RecentCalls />
    </div>
  );
}

/** The server's "now" (ms), ticking every second: the board's timers. */
function useServerNow(): number {
  const { skewMs } = useLive();
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, []);
  return now + skewMs;
}

function CallerCell({ call }: { call: BoardCallRow }) {
  const { t } = useI18n();
  if (call.partial) return <span className="muted">{t("supervisor.unknownCaller")}</span>;
  const who = call.direction === "inbound" ? formatPhone(call.caller) : call.caller;
  return (
    <>
      {call.contact ? (
        <Link to={`/contacts/${call.contact.id}`}>{call.contact.name}</Link>
      ) : (
        who
      )}
      {call.contact && <span className="muted"> {who}</span>}
      {call.contact?.vip && <span className="tag vip">VIP</span>}
    </>
  );
}

function QueuesBoard() {
  const { t } = useI18n();
  const { calls } = useLive();
  const now = useServerNow();
  if (calls === null) return null;
  const waits = queueWaits(calls);
  return (
    <section className="panel" aria-label={t("supervisor.queues")}>
      <h2>{t("supervisor.queues")}</h2>
      {waits.length === 0 ? (
        <p className="muted">{t("supervisor.noQueues")}</p>
      ) : (
        <table className="grid queues">
          <thead>
            <tr>
              <th>{t("supervisor.queue")}</th>
              <th>{t("supervisor.waiting")}</th>
              <th>{t("supervisor.longest")}</th>
              <th>{t("supervisor.callers")}</th>
            </tr>
          </thead>
          <tbody>
            {waits.map((wait) => (
              <tr key={wait.queue} data-queue={wait.queue}>
                <td>{wait.queue}</td>
                <td className="num" data-field="waiting">
                  {wait.callers.length}
                </td>
                <td className="num" data-field="longest">
                  {formatDuration(elapsedS(wait.longest_since_ms, now))}
                </td>
                <td>
                  <ol className="waiting">
                    {wait.callers.map((call) => (
                      <li key={call.call_id} data-call={call.call_id} data-state={call.state}>
                        <CallerCell call={call} />{" "}
                        <span className="num" data-field="wait">
                          {formatDuration(elapsedS(call.queued_ms, now))}
                        </span>
                        {call.state === "ringing" && (
                          <span className="tag state-ringing">
                            {t("callState.offered", { who: call.ringing.join(", ") })}
                          </span>
                        )}
                      </li>
                    ))}
                  </ol>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function CallsBoard() {
  const { t } = useI18n();
  const { calls, agents } = useLive();
  const now = useServerNow();
  if (calls === null) return null;
  const names = new Map((agents ?? []).map((agent) => [agent.extension, agent.name]));
  const person = (extension: string) => names.get(extension) ?? extension;
  return (
    <section className="panel" aria-label={t("supervisor.calls")}>
      <h2>
        {t("supervisor.calls")} <span className="muted">({calls.length})</span>
      </h2>
      {calls.length === 0 ? (
        <p className="muted">{t("supervisor.noCalls")}</p>
      ) : (
        <table className="grid live-calls">
          <thead>
            <tr>
              <th>{t("supervisor.caller")}</th>
              <th>{t("supervisor.dialled")}</th>
              <th>{t("supervisor.state")}</th>
              <th>{t("supervisor.with")}</th>
              <th>{t("supervisor.for")}</th>
              <th>{t("supervisor.city")}</th>
            </tr>
          </thead>
          <tbody>
            {calls.map((call) => (
              <tr key={call.call_id} data-call={call.call_id} data-state={call.state}>
                <td>
                  <CallerCell call={call} />
                </td>
                <td>
                  {call.direction === "inbound" ? formatPhone(call.number) : formatPhone(call.callee)}
                  {call.label && <span className="tag">{call.label}</span>}
                </td>
                <td>
                  <span className={`tag call-${call.state}`}>{t(`callState.${call.state}`)}</span>
                  {call.queue && <span className="muted"> {call.queue}</span>}
                </td>
                <td data-field="with">
                  {call.state === "talking"
                    ? call.answered_by_name || person(call.answered_by)
                    : call.ringing.map(person).join(", ")}
                </td>
                <td className="num" data-field="since">
                  {formatDuration(elapsedS(call.since_ms, now))}
                </td>
                <td>{call.city}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function AgentBoard() {
  const { t } = useI18n();
  const { agents, link } = useLive();
  const now = useServerNow();
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
