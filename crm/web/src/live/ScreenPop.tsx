// The caller's card, shown when the CRM says a call is about to ring this person (before
// the phone rings): a known contact with their company, manager and open deals, or a
// new number with a quick-create form. A client of another manager is flagged.
import { useLayoutEffect, useState, type FormEvent } from "react";
import { Link } from "react-router-dom";
import { errorText, unwrap } from "../api/errors";
import { useSession, useWorkspace } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import { formatPhone } from "../lib/phone";
import { recordPop, useLive } from "./LiveFeed";
import { popShown } from "./popGate";
import { otherOwner, type ScreenPopMessage } from "./protocol";

export function ScreenPops() {
  const { pops } = useLive();
  if (pops.length === 0) return null;
  return (
    <div className="screen-pops">
      {pops.map((pop) => (
        <ScreenPop key={pop.call_id} pop={pop} />
      ))}
    </div>
  );
}

function ScreenPop({ pop }: { pop: ScreenPopMessage }) {
  const { t, tv } = useI18n();
  const { me } = useSession();
  const { dismiss } = useLive();
  const [shownAt, setShownAt] = useState(0);
  // Laid out and about to be painted: the moment the browser tests compare with the ring.
  useLayoutEffect(() => {
    const now = Date.now();
    recordPop(pop.call_id, "shown_ms", now);
    popShown(pop.caller, now);
    setShownAt(now);
  }, [pop.call_id, pop.caller]);
  const contact = pop.contact;
  const owner = otherOwner(contact, me.user_id);
  return (
    <aside
      className="screen-pop"
      role="alertdialog"
      aria-label={t("pop.title")}
      data-call-id={pop.call_id}
      data-shown-at={shownAt || undefined}
    >
      <header>
        <strong>{t("pop.title")}</strong> <span className="phone">{formatPhone(pop.caller)}</span>
        <button type="button" className="link" onClick={() => dismiss(pop.call_id)}>
          ×
        </button>
      </header>
      {pop.label && <p className="muted">{t("pop.channel", { label: pop.label })}</p>}
      {contact ? (
        <div className="pop-contact">
          <Link to={`/contacts/${contact.id}`} className="pop-name">
            {contact.name}
          </Link>
          {contact.vip && <span className="badge vip">VIP</span>}
          <span className="badge">{tv("category", contact.category)}</span>
          {contact.company_name && <div>{contact.company_name}</div>}
          {owner && (
            <p className="warning" role="status">
              {t("pop.clientOf", { name: owner })}
            </p>
          )}
          {contact.deals && contact.deals.length > 0 && (
            <ul className="pop-deals">
              {contact.deals.map((deal) => (
                <li key={deal.id}>
                  {deal.title} — <span className="muted">{deal.stage}</span>
                </li>
              ))}
            </ul>
          )}
        </div>
      ) : (
        <NewNumber pop={pop} />
      )}
    </aside>
  );
}

function NewNumber({ pop }: { pop: ScreenPopMessage }) {
  const { t } = useI18n();
  const { crm } = useWorkspace();
  const { me } = useSession();
  const [name, setName] = useState("");
  const [error, setError] = useState("");
  const [created, setCreated] = useState<string | null>(null);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setError("");
    try {
      const contact = unwrap(
        await crm.POST("/v1/contacts", {
          body: {
            name: name.trim() || pop.caller,
            phones: [pop.caller],
            owner_user_id: me.user_id ?? null,
            source_label: pop.label || "",
            category: "client",
            vip: false,
          },
        }),
      );
      setCreated(contact.id);
    } catch (failure) {
      setError(errorText(failure));
    }
  };
  if (created) {
    return (
      <p>
        <Link to={`/contacts/${created}`}>{t("pop.openCreated")}</Link>
      </p>
    );
  }
  return (
    <form className="pop-new" onSubmit={(event) => void submit(event)}>
      <p className="muted">{t("pop.unknown")}</p>
      <input
        value={name}
        onChange={(event) => setName(event.target.value)}
        placeholder={t("pop.namePlaceholder")}
        aria-label={t("pop.namePlaceholder")}
      />
      <input value={pop.caller} readOnly aria-label={t("form.phones")} />
      <button type="submit">{t("pop.create")}</button>
      {error && <p className="error">{error}</p>}
    </form>
  );
}
