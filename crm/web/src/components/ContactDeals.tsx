import { useCallback, useState } from "react";
import { Link } from "react-router-dom";
import { errorText, unwrap } from "../api/errors";
import { useWorkspace } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import { formatMoney } from "../lib/board";
import { useLoad } from "../lib/useLoad";
import { NewDealForm } from "../pages/DealsBoard";

/** A contact's (or company's) deals with the stage each is in, and a new deal. */
export function ContactDeals({
  contactId,
  companyId,
}: {
  contactId?: string;
  companyId?: string;
}) {
  const { t, tv, locale } = useI18n();
  const { crm, personName } = useWorkspace();
  const load = useCallback(async () => {
    const [deals, pipelines] = await Promise.all([
      crm.GET("/v1/deals", {
        params: { query: { contact_id: contactId, company_id: companyId, limit: 100 } },
      }),
      crm.GET("/v1/pipelines", { params: { query: { limit: 100 } } }),
    ]);
    const stages = new Map<string, string>();
    for (const pipeline of unwrap(pipelines).items) {
      for (const stage of pipeline.stages) stages.set(stage.id, stage.name);
    }
    return { deals: unwrap(deals), stages };
  }, [crm, contactId, companyId]);
  const { data, error, reload } = useLoad(load, `${contactId}/${companyId}`);
  const [creating, setCreating] = useState(false);

  return (
    <section className="panel deals" aria-labelledby="deals-title">
      <div className="page-head">
        <h2 id="deals-title">
          {t("contact.deals")}{" "}
          {data && data.deals.total > 0 && <span className="count">{data.deals.total}</span>}
        </h2>
        {contactId && !creating && (
          <button type="button" className="small" onClick={() => setCreating(true)}>
            {t("deals.new")}
          </button>
        )}
      </div>
      {creating && contactId && (
        <NewDealForm
          pipelineId={null}
          stageId={null}
          contactId={contactId}
          onCreated={() => {
            setCreating(false);
            reload();
          }}
          onCancel={() => setCreating(false)}
        />
      )}
      {error ? <p className="error">{errorText(error)}</p> : null}
      {data && data.deals.items.length === 0 && <p className="muted">{t("contact.noDeals")}</p>}
      {data && data.deals.items.length > 0 && (
        <table className="grid deal-list">
          <tbody>
            {data.deals.items.map((deal) => (
              <tr key={deal.id} data-deal-id={deal.id} className={`status-${deal.status}`}>
                <td>
                  <Link to={`/deals?pipeline=${deal.pipeline_id}`}>{deal.title}</Link>
                </td>
                <td className="nowrap">
                  <span className="tag stage">{data.stages.get(deal.stage_id) ?? "…"}</span>
                  {deal.status !== "open" && (
                    <span className="tag">{tv("stageKind", deal.status)}</span>
                  )}
                </td>
                <td className="num nowrap">
                  {deal.amount ? formatMoney(deal.amount, deal.currency, locale) : ""}
                </td>
                <td className="muted">{personName(deal.owner_user_id)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
