import { Fragment, useCallback } from "react";
import { Link } from "react-router-dom";
import { errorText, unwrap } from "../api/errors";
import { useWorkspace } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import { formatDateTime, formatDuration } from "../lib/format";
import { formatPhone } from "../lib/phone";
import { useLoad } from "../lib/useLoad";
import { StoredResult } from "../pages/AfterCall";
import { AudioButton } from "./AudioButton";

/** A contact's calls, newest first, with their recordings and voice messages. */
export function CallTimeline({ contactId }: { contactId: string }) {
  const { t, locale } = useI18n();
  const { crm, personName, extensionName } = useWorkspace();
  const load = useCallback(
    async () =>
      unwrap(
        await crm.GET("/v1/contacts/{contact_id}/calls", {
          params: { path: { contact_id: contactId }, query: { limit: 100 } },
        }),
      ),
    [crm, contactId],
  );
  const { data, error, loading } = useLoad(load, contactId);

  return (
    <section className="panel">
      <h2>
        {t("calls.title")} {data && data.total > 0 && <span className="count">{data.total}</span>}
      </h2>
      {error ? <p className="error">{errorText(error)}</p> : null}
      {loading && !data && <p className="muted">{t("app.loading")}</p>}
      {data && data.items.length === 0 && <p className="muted">{t("calls.empty")}</p>}
      {data && data.items.length > 0 && (
        <table className="grid calls">
          <tbody>
            {data.items.map((call) => {
              const answeredBy = call.answered_user_id
                ? personName(call.answered_user_id)
                : call.answered_by && extensionName(call.answered_by);
              return (
                <Fragment key={call.call_id}>
                <tr className={call.missed ? "missed" : undefined} data-call-id={call.call_id}>
                  <td className="nowrap">{formatDateTime(call.started_at, locale)}</td>
                  <td className="nowrap">
                    <span className={`direction ${call.direction}`}>
                      {call.direction === "inbound" ? "↙" : "↗"}{" "}
                      {call.direction === "inbound" ? t("calls.inbound") : t("calls.outbound")}
                    </span>
                    {call.missed && <span className="tag danger">{t("calls.missed")}</span>}
                    {call.status === "talking" && <span className="tag">{t("calls.talking")}</span>}
                    {call.status === "ringing" && <span className="tag">{t("calls.ringing")}</span>}
                  </td>
                  <td>
                    {call.number && (
                      <span className="muted">{t("calls.via", { number: formatPhone(call.number) })}</span>
                    )}
                    {call.label && <span className="tag">{call.label}</span>}
                  </td>
                  <td>{answeredBy && t("calls.answeredBy", { name: answeredBy })}</td>
                  <td className="nowrap num">{call.talk_s > 0 ? formatDuration(call.talk_s) : ""}</td>
                  <td className="audio-cell">
                    {call.recording_url && (
                      <AudioButton
                        path={call.recording_url}
                        label={t("calls.recording")}
                        ms={call.recording_ms}
                      />
                    )}
                    {call.voicemail_url && (
                      <AudioButton
                        path={call.voicemail_url}
                        label={t("calls.voicemail")}
                        ms={call.voicemail_ms}
                      />
                    )}
                    {!call.result && call.answered_at && call.status === "ended" && (
                      <Link className="small after-call-link" to={`/after-call/${encodeURIComponent(call.call_id)}`}>
                        {t("calls.fillResult")}
                      </Link>
                    )}
                  </td>
                </tr>
                {call.result && (
                  <tr className="result-row">
                    <td />
                    <td colSpan={5}>
                      <StoredResult result={call.result} />
                    </td>
                  </tr>
                )}
                </Fragment>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}
