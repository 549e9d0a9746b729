// The header's presence selector (PATCH /v1/users/me on the control API: the node routes
// on it from the next call) and the wrap-up countdown after a call. The wrap-up is the
// node's own (settings.wrap_up_s: no queue call is offered meanwhile); this only shows it.
import { useCallback, useEffect, useState } from "react";
import { errorText, unwrap } from "../api/errors";
import { useWorkspace } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import { useLive } from "./LiveFeed";
import { wrapUpLeft } from "./protocol";

type Presence = "available" | "away" | "do-not-disturb";
const PRESENCES: Presence[] = ["available", "away", "do-not-disturb"];

export function PresenceSelect() {
  const { t } = useI18n();
  const { control } = useWorkspace();
  const { lastEnded } = useLive();
  const [presence, setPresence] = useState<Presence | null>(null);
  const [wrapUpS, setWrapUpS] = useState(0);
  const [error, setError] = useState("");
  const [now, setNow] = useState(() => Date.now());

  const load = useCallback(async () => {
    try {
      const me = unwrap(await control.GET("/v1/users/me"));
      setPresence(me.presence);
      setWrapUpS(me.settings.wrap_up_s ?? 0);
    } catch (failure) {
      setError(errorText(failure));
    }
  }, [control]);
  useEffect(() => {
    void load();
  }, [load]);

  const left = lastEnded ? wrapUpLeft(lastEnded.at_ms, wrapUpS, now) : 0;
  useEffect(() => {
    if (left <= 0) return undefined;
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, [left]);
  useEffect(() => setNow(Date.now()), [lastEnded]);

  const change = async (next: Presence) => {
    setError("");
    try {
      const me = unwrap(await control.PATCH("/v1/users/me", { body: { presence: next } }));
      setPresence(me.presence);
    } catch (failure) {
      setError(errorText(failure));
    }
  };

  return (
    <span className="presence">
      {left > 0 && (
        <span className="badge wrap-up" role="status">
          {t("presence.wrapUp", { seconds: left })}
        </span>
      )}
      <select
        aria-label={t("presence.label")}
        value={presence ?? ""}
        disabled={presence === null}
        className={`presence-${presence ?? "unknown"}`}
        onChange={(event) => void change(event.target.value as Presence)}
      >
        {presence === null && <option value="">…</option>}
        {PRESENCES.map((value) => (
          <option key={value} value={value}>
            {t(`presence.${value}`)}
          </option>
        ))}
      </select>
      {error && <span className="error" title={error}>!</span>}
    </span>
  );
}
