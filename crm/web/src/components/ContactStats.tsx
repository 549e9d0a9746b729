import { useCallback } from "react";
import { errorText, unwrap } from "../api/errors";
import type { CallEntry } from "../api/types";
import { useWorkspace } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import { formatDateTime, formatDuration } from "../lib/format";
import { browserTimeZone, contactStats } from "../lib/reports";
import { useLoad } from "../lib/useLoad";
import { AnsweredMissedChart } from "./AnsweredMissedChart";

const PAGE = 200;
// A client with more calls than this is counted on their latest ones (and says so).
const MOST = 5000;

/**
 * The card's statistics tab: the client's calls counted from the CRM's own call list
 * (every page of GET /v1/contacts/{id}/calls), so an agent sees it for the clients they
 * may open, with no report permission and no CDR store involved.
 */
export function ContactStats({ contactId }: { contactId: string }) {
  const { t, locale } = useI18n();
  const { crm } = useWorkspace();
  const load = useCallback(async () => {
    const calls: CallEntry[] = [];
    let total = 0;
    do {
      const page = unwrap(
        await crm.GET("/v1/contacts/{contact_id}/calls", {
          params: {
            path: { contact_id: contactId },
            query: { limit: PAGE, offset: calls.length },
          },
        }),
      );
      total = page.total;
      calls.push(...page.items);
      if (page.items.length === 0) break;
    } while (calls.length < total && calls.length < MOST);
    return { stats: contactStats(calls, browserTimeZone()), total, counted: calls.length };
  }, [crm, contactId]);
  const { data, error, loading } = useLoad(load, contactId);

  if (error) return <p className="error">{errorText(error)}</p>;
  if (!data) return loading ? <p className="muted">{t("app.loading")}</p> : null;
  const { stats } = data;
  if (stats.total === 0) return <p className="muted empty">{t("stats.none")}</p>;
  const figures: [string, string, string][] = [
    ["total", t("stats.total"), String(data.total)],
    ["inbound", t("stats.inbound"), String(stats.inbound)],
    ["outbound", t("stats.outbound"), String(stats.outbound)],
    ["answered", t("stats.answered"), String(stats.answered)],
    ["missed", t("stats.missed"), String(stats.missed)],
    ["talk", t("stats.talk"), formatDuration(stats.talkS)],
    ["last", t("stats.lastCall"), formatDateTime(stats.lastCall, locale)],
  ];
  return (
    <section className="panel contact-stats" aria-label={t("stats.tab.stats")}>
      <dl className="figures">
        {figures.map(([field, label, value]) => (
          <div key={field} className="figure" data-figure={field}>
            <dt>{label}</dt>
            <dd>{value}</dd>
          </div>
        ))}
      </dl>
      {data.counted < data.total && (
        <p className="muted small">{`${data.counted} / ${data.total}`}</p>
      )}
      <h3>{t("stats.perMonth")}</h3>
      <div className="chart" data-chart="months">
        <AnsweredMissedChart
          data={stats.perMonth}
          keyField="month"
          height={220}
          answeredName={t("stats.answered")}
          missedName={t("stats.missed")}
        />
      </div>
      <table className="grid per-month">
        <thead>
          <tr>
            <th>{t("stats.month")}</th>
            <th className="num">{t("stats.calls")}</th>
            <th className="num">{t("stats.answered")}</th>
            <th className="num">{t("stats.missed")}</th>
          </tr>
        </thead>
        <tbody>
          {stats.perMonth.map((month) => (
            <tr key={month.month} data-month={month.month}>
              <td>{month.month}</td>
              <td className="num">{month.calls}</td>
              <td className="num">{month.answered}</td>
              <td className="num">{month.missed}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
