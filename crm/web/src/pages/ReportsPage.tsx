// /reports (supervisors and tenant admins): the control API's call and client reports for a
// period, a time zone, a grouping and a direction, as charts, figures and a table, with the
// CSV and XLSX exports. The ad-channel and manager reports show when the control API has
// them (200), and are left out otherwise.
import { useCallback, useEffect, useMemo, useState } from "react";
import { useSearchParams } from "react-router-dom";
import {
  CartesianGrid,
  Legend,
  Line,
  LineChart,
  ResponsiveContainer,
  Tooltip,
  XAxis,
  YAxis,
} from "recharts";
import { ApiFailure, errorText, unwrap } from "../api/errors";
import type { components } from "../api/generated/control";
import { isManager } from "../auth/session";
import { useSession, useWorkspace } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import type { MessageKey } from "../i18n/messages";
import { formatDuration, formatNumber } from "../lib/format";
import {
  browserTimeZone,
  DIRECTIONS,
  exportName,
  GROUP_BY,
  keyText,
  percent,
  PRESETS,
  presetPeriod,
  timeZoneChoices,
  type Direction,
  type GroupBy,
  type Period,
} from "../lib/reports";
import { useLoad } from "../lib/useLoad";
import { AnsweredMissedChart } from "../components/AnsweredMissedChart";

type CallsReport = components["schemas"]["CallsReportOut"];
type CallsRow = components["schemas"]["CallsRowOut"];
type ClientsReport = components["schemas"]["ClientsReportOut"];


/** What a report's URL carries: the period always, then whatever the report takes. */
type Query = Period & Record<string, string>;

interface Filters extends Period {
  tz: string;
  groupBy: GroupBy;
  direction: Direction;
}

export function ReportsPage() {
  const { t } = useI18n();
  const { me } = useSession();
  useEffect(() => {
    document.title = `${t("reports.title")} — ${t("app.title")}`;
  }, [t]);
  if (!isManager(me)) return <p className="page error">{t("reports.onlyManagers")}</p>;
  return <Reports />;
}

/** GET on the control API with the person's token, for what the typed client does not
 * cover: the files of the exports and the reports this build may not have yet. */
function useControlGet() {
  const { config, logout } = useWorkspace();
  const { token } = useSession();
  return useCallback(
    async (path: string, query: Query): Promise<Response> => {
      const url = `${config.control_url}${path}?${new URLSearchParams(query).toString()}`;
      const response = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
      if (response.status === 401) logout("expired");
      return response;
    },
    [config.control_url, token, logout],
  );
}

function Reports() {
  const { t } = useI18n();
  // The filters live in the URL: a report can be bookmarked or sent to a colleague.
  const [search, setSearch] = useSearchParams();
  const filters = filtersOf(search);
  const set = (change: Partial<Filters>) => {
    const next = { ...filters, ...change };
    setSearch(
      {
        from: next.from,
        to: next.to,
        tz: next.tz,
        group_by: next.groupBy,
        direction: next.direction,
      },
      { replace: true },
    );
  };
  const query = { from: filters.from, to: filters.to, tz: filters.tz };

  return (
    <div className="page reports">
      <h1>{t("reports.title")}</h1>
      <ReportFilters filters={filters} onChange={set} />
      <CallsSection filters={filters} />
      <ClientsSection query={query} />
      <OptionalReport report="channels" title="reports.channels" query={query} />
      <OptionalReport report="managers" title="reports.managers" query={query} />
    </div>
  );
}

const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** The filters a URL asks for; what it leaves out or gets wrong, the defaults (the last 7
 * days in the browser's zone, by day, inbound). A zone the API does not know is its 422. */
function filtersOf(search: URLSearchParams): Filters {
  const tz = search.get("tz") || browserTimeZone();
  const week = presetPeriod("week", new Date(), tz);
  const from = search.get("from") ?? "";
  const to = search.get("to") ?? "";
  const groupBy = search.get("group_by") ?? "";
  const direction = search.get("direction") ?? "";
  return {
    from: DAY.test(from) ? from : week.from,
    to: DAY.test(to) ? to : week.to,
    tz,
    groupBy: (GROUP_BY as readonly string[]).includes(groupBy) ? (groupBy as GroupBy) : "day",
    direction: (DIRECTIONS as readonly string[]).includes(direction)
      ? (direction as Direction)
      : "inbound",
  };
}

function ReportFilters({
  filters,
  onChange,
}: {
  filters: Filters;
  onChange(change: Partial<Filters>): void;
}) {
  const { t } = useI18n();
  const zones = useMemo(() => timeZoneChoices(filters.tz), [filters.tz]);
  return (
    <div className="filters report-filters" role="group" aria-label={t("reports.title")}>
      <span className="tabs" role="group">
        {PRESETS.map((preset) => {
          const period = presetPeriod(preset, new Date(), filters.tz);
          const active = period.from === filters.from && period.to === filters.to;
          return (
            <button
              key={preset}
              type="button"
              className={active ? "active" : undefined}
              aria-pressed={active}
              onClick={() => onChange(period)}
            >
              {t(`reports.preset.${preset}`)}
            </button>
          );
        })}
      </span>
      <label className="inline-field">
        {t("reports.from")}
        <input
          type="date"
          value={filters.from}
          required
          onChange={(event) => event.target.value && onChange({ from: event.target.value })}
        />
      </label>
      <label className="inline-field">
        {t("reports.to")}
        <input
          type="date"
          value={filters.to}
          required
          onChange={(event) => event.target.value && onChange({ to: event.target.value })}
        />
      </label>
      <label className="inline-field">
        {t("reports.tz")}
        <select value={filters.tz} onChange={(event) => onChange({ tz: event.target.value })}>
          {zones.map((zone) => (
            <option key={zone} value={zone}>
              {zone}
            </option>
          ))}
        </select>
      </label>
      <label className="inline-field">
        {t("reports.groupBy")}
        <select
          value={filters.groupBy}
          onChange={(event) => onChange({ groupBy: event.target.value as GroupBy })}
        >
          {GROUP_BY.map((group) => (
            <option key={group} value={group}>
              {t(`reports.group.${group}`)}
            </option>
          ))}
        </select>
      </label>
      <label className="inline-field">
        {t("reports.direction")}
        <select
          value={filters.direction}
          onChange={(event) => onChange({ direction: event.target.value as Direction })}
        >
          {DIRECTIONS.map((direction) => (
            <option key={direction} value={direction}>
              {t(`reports.dir.${direction}`)}
            </option>
          ))}
        </select>
      </label>
    </div>
  );
}

function failureText(error: unknown, t: ReturnType<typeof useI18n>["t"]): string {
  if (error instanceof ApiFailure && error.status === 503) return t("reports.unavailable");
  return errorText(error);
}

function CallsSection({ filters }: { filters: Filters }) {
  const { t, locale } = useI18n();
  const { control, extensionName } = useWorkspace();
  const query = {
    from: filters.from,
    to: filters.to,
    tz: filters.tz,
    group_by: filters.groupBy,
    direction: filters.direction,
  };
  const key = JSON.stringify(query);
  const load = useCallback(
    // Without ?format the API answers JSON; the type also lists the export's file types.
    async () =>
      unwrap(await control.GET("/v1/reports/calls", { params: { query } })) as CallsReport,
    // the key holds every value the query is made of
    [control, key],
  );
  const { data, error, loading } = useLoad(load, key);
  const name = (row: CallsRow) =>
    keyText(filters.groupBy, row.key, locale, t("reports.none"), extensionName);
  const chart = (data?.rows ?? []).map((row) => ({
    name: name(row),
    answered: row.answered,
    missed: row.missed,
    p50: row.answer_p50_s,
    p90: row.answer_p90_s,
  }));

  return (
    <section className="panel" aria-labelledby="calls-report-title" aria-busy={loading}>
      <div className="page-head">
        <h2 id="calls-report-title">{t("reports.calls")}</h2>
        <ExportButtons report="calls" query={query} />
      </div>
      {error ? (
        <p className="error" role="alert">
          {failureText(error, t)}
        </p>
      ) : null}
      {!data && loading && <p className="muted">{t("app.loading")}</p>}
      {data && <CallTotals report={data} />}
      {data && data.rows.length === 0 && <p className="muted empty">{t("reports.empty")}</p>}
      {data && data.rows.length > 0 && (
        <>
          <div className="chart" data-chart="calls" aria-label={t("reports.chart")}>
            <h3>{t("reports.chart")}</h3>
            <AnsweredMissedChart
              data={chart}
              keyField="name"
              height={280}
              answeredName={t("reports.answered")}
              missedName={t("reports.missed")}
            />
          </div>
          {chart.some((point) => point.p50 !== null) && (
            <div className="chart" data-chart="speed" aria-label={t("reports.speedChart")}>
              <h3>{t("reports.speedChart")}</h3>
              <ResponsiveContainer width="100%" height={200}>
                <LineChart data={chart} margin={{ top: 8, right: 16, bottom: 8, left: 0 }}>
                  <CartesianGrid strokeDasharray="3 3" vertical={false} />
                  <XAxis dataKey="name" />
                  <YAxis />
                  <Tooltip />
                  <Legend />
                  <Line
                    dataKey="p50"
                    name={t("reports.p50")}
                    stroke="#1f5fa8"
                    isAnimationActive={false}
                  />
                  <Line
                    dataKey="p90"
                    name={t("reports.p90")}
                    stroke="#d68910"
                    isAnimationActive={false}
                  />
                </LineChart>
              </ResponsiveContainer>
            </div>
          )}
          <CallRows rows={data.rows} totals={data.totals} name={name} />
        </>
      )}
    </section>
  );
}

function seconds(value: number | null | undefined, locale: string): string {
  return value === null || value === undefined ? "—" : `${formatNumber(value, locale)} s`;
}

function CallTotals({ report }: { report: CallsReport }) {
  const { t, locale } = useI18n();
  const totals = report.totals;
  const figures: [string, string, string][] = [
    ["total", t("reports.total"), formatNumber(totals.total, locale)],
    ["answered", t("reports.answered"), formatNumber(totals.answered, locale)],
    ["missed", t("reports.missed"), formatNumber(totals.missed, locale)],
    [
      "missed_not_called_back",
      t("reports.notCalledBack"),
      formatNumber(totals.missed_not_called_back, locale),
    ],
    [
      "service_level",
      t("reports.serviceLevel", { seconds: report.service_level_s }),
      percent(totals.service_level, locale),
    ],
    ["talk_s", t("reports.talk"), formatDuration(totals.talk_s)],
    ["answer_p50_s", t("reports.p50"), seconds(totals.answer_p50_s, locale)],
    ["answer_p90_s", t("reports.p90"), seconds(totals.answer_p90_s, locale)],
  ];
  return (
    <dl className="figures">
      {figures.map(([field, label, value]) => (
        <div key={field} className="figure" data-figure={field}>
          <dt>{label}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}

function CallRows({
  rows,
  totals,
  name,
}: {
  rows: CallsRow[];
  totals: CallsRow;
  name(row: CallsRow): string;
}) {
  const { t, locale } = useI18n();
  const cells = (row: CallsRow) => (
    <>
      <td className="num">{row.total}</td>
      <td className="num">{row.answered}</td>
      <td className="num">{row.missed}</td>
      <td className="num">{row.missed_not_called_back}</td>
      <td className="num">{percent(row.service_level, locale)}</td>
      <td className="num">{seconds(row.answer_p50_s, locale)}</td>
      <td className="num">{seconds(row.answer_p90_s, locale)}</td>
      <td className="num">{formatDuration(row.talk_s)}</td>
    </>
  );
  return (
    <table className="grid report-rows">
      <thead>
        <tr>
          <th>{t("reports.key")}</th>
          <th className="num">{t("reports.total")}</th>
          <th className="num">{t("reports.answered")}</th>
          <th className="num">{t("reports.missed")}</th>
          <th className="num">{t("reports.notCalledBack")}</th>
          <th className="num">SL</th>
          <th className="num">{t("reports.p50")}</th>
          <th className="num">{t("reports.p90")}</th>
          <th className="num">{t("reports.talk")}</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((row) => (
          <tr key={row.key} data-key={row.key}>
            <td>{name(row)}</td>
            {cells(row)}
          </tr>
        ))}
      </tbody>
      <tfoot>
        <tr className="strong" data-key="total">
          <td>{t("reports.total")}</td>
          {cells(totals)}
        </tr>
      </tfoot>
    </table>
  );
}

function ClientsSection({ query }: { query: Query }) {
  const { t, tv } = useI18n();
  const { control } = useWorkspace();
  const key = JSON.stringify(query);
  const load = useCallback(
    async () =>
      unwrap(await control.GET("/v1/reports/clients", { params: { query } })) as ClientsReport,
    [control, key],
  );
  const { data, error } = useLoad<ClientsReport>(load, key);
  const categories = Object.entries(data?.by_category ?? {});
  return (
    <section className="panel" aria-labelledby="clients-report-title">
      <div className="page-head">
        <h2 id="clients-report-title">{t("reports.clients")}</h2>
        <ExportButtons report="clients" query={query} />
      </div>
      {error ? <p className="error">{failureText(error, t)}</p> : null}
      {data && (
        <>
          <p className="clients-line" data-figure="clients">
            {t("reports.clientsLine", {
              total: data.total,
              existing: data.existing,
              unknown: data.unknown,
              vip: data.vip,
            })}
          </p>
          {categories.length > 0 && (
            <dl className="facts" aria-label={t("reports.byCategory")}>
              {categories.map(([category, count]) => (
                <div key={category} className="figure" data-category={category}>
                  <dt>{tv("category", category)}</dt>
                  <dd>{count}</dd>
                </div>
              ))}
            </dl>
          )}
        </>
      )}
    </section>
  );
}

function ExportButtons({ report, query }: { report: string; query: Query }) {
  const { t } = useI18n();
  const get = useControlGet();
  const [failure, setFailure] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const download = async (format: "csv" | "xlsx") => {
    setBusy(true);
    setFailure(null);
    try {
      const response = await get(`/v1/reports/${report}`, { ...query, format });
      if (!response.ok) {
        let body: unknown = null;
        try {
          body = await response.json();
        } catch {
          // not JSON: the status says enough
        }
        throw new ApiFailure(response.status, body);
      }
      const url = URL.createObjectURL(await response.blob());
      const link = document.createElement("a");
      link.href = url;
      link.download = exportName(report, query, format);
      document.body.append(link);
      link.click();
      link.remove();
      // The click has handed the file to the browser; the URL is not needed after it.
      window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (error) {
      setFailure(t("reports.exportFailed", { message: failureText(error, t) }));
    } finally {
      setBusy(false);
    }
  };
  return (
    <span className="row export">
      {failure && (
        <span className="error small" role="alert">
          {failure}
        </span>
      )}
      {(["csv", "xlsx"] as const).map((format) => (
        <button
          key={format}
          type="button"
          className="small"
          disabled={busy}
          data-export={`${report}-${format}`}
          onClick={() => void download(format)}
        >
          {t("reports.export", { format: format.toUpperCase() })}
        </button>
      ))}
    </span>
  );
}

type Kind = "text" | "count" | "money" | "duration";
type Column = readonly [field: string, label: MessageKey, kind: Kind];

// The columns a person reads; the exports carry every field of the report.
const CHANNEL_COLUMNS: readonly Column[] = [
  ["label", "reports.col.label", "text"],
  ["calls", "reports.col.calls", "count"],
  ["first_time_callers", "reports.col.firstTime", "count"],
  ["deals_won", "reports.col.dealsWon", "count"],
  ["spend", "reports.col.spend", "money"],
  ["cost_per_call", "reports.col.costPerCall", "money"],
  ["cost_per_new_client", "reports.col.costPerNew", "money"],
  ["cost_per_won_deal", "reports.col.costPerWon", "money"],
];
const MANAGER_COLUMNS: readonly Column[] = [
  ["name", "reports.col.manager", "text"],
  ["offered", "reports.col.offered", "count"],
  ["answered", "reports.answered", "count"],
  ["missed", "reports.missed", "count"],
  ["talk_s", "reports.talk", "duration"],
  ["outbound", "reports.col.outbound", "count"],
  ["clients_brought", "reports.col.clientsBrought", "count"],
  ["deals_moved", "reports.col.dealsMoved", "count"],
  ["deals_won", "reports.col.dealsWon", "count"],
];

type Row = Record<string, unknown>;

/** A report this page reads loosely (the ad channels, the managers): its rows as a table
 * when the control API answers 200, nothing at all otherwise (an older control API, a
 * refusal), so there is never a section or a button that cannot work. */
function OptionalReport({
  report,
  title,
  query,
}: {
  report: "channels" | "managers";
  title: "reports.channels" | "reports.managers";
  query: Query;
}) {
  const { t, locale } = useI18n();
  const { extensionName } = useWorkspace();
  const get = useControlGet();
  const key = JSON.stringify(query);
  const load = useCallback(async () => {
    const response = await get(`/v1/reports/${report}`, query);
    if (!response.ok) return null;
    const body = (await response.json()) as { rows?: unknown; totals?: unknown };
    if (!Array.isArray(body.rows)) return null;
    const totals = typeof body.totals === "object" && body.totals !== null ? body.totals : null;
    return { rows: body.rows as Row[], totals: totals as Row | null };
  }, [get, report, key]);
  const { data } = useLoad(load, `${report}/${key}`);
  if (!data) return null;
  const columns = report === "channels" ? CHANNEL_COLUMNS : MANAGER_COLUMNS;
  const show = (row: Row, field: string, kind: Kind): string => {
    const value = row[field];
    if (field === "name" && !value) return extensionName(String(row.key ?? ""));
    if (field === "label" && value === "") return t("reports.none");
    if (value === null || value === undefined) return "—";
    if (kind === "duration" && typeof value === "number") return formatDuration(value);
    if (kind === "money" || kind === "count") {
      const number = typeof value === "number" ? value : Number(value);
      if (!Number.isNaN(number)) return formatNumber(number, locale);
    }
    return String(value);
  };
  const cells = (row: Row) =>
    columns.map(([field, , kind]) => (
      <td key={field} className={kind === "text" ? undefined : "num"}>
        {show(row, field, kind)}
      </td>
    ));
  return (
    <section className="panel" data-report={report}>
      <div className="page-head">
        <h2>{t(title)}</h2>
        <ExportButtons report={report} query={query} />
      </div>
      {data.rows.length === 0 ? (
        <p className="muted empty">{t("reports.empty")}</p>
      ) : (
        <table className="grid report-table">
          <thead>
            <tr>
              {columns.map(([field, label, kind]) => (
                <th key={field} className={kind === "text" ? undefined : "num"}>
                  {t(label)}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {data.rows.map((row, index) => (
              <tr key={index} data-key={String(row.key ?? row.label ?? index)}>
                {cells(row)}
              </tr>
            ))}
          </tbody>
          {data.totals && (
            <tfoot>
              <tr className="strong" data-key="total">
                {cells({ ...data.totals, label: t("reports.total"), name: t("reports.total") })}
              </tr>
            </tfoot>
          )}
        </table>
      )}
    </section>
  );
}
