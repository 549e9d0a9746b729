// /after-call/:callId: the crm-pages branch builds the after-call form here; until it is
// merged this placeholder links to the call's timeline.
import { useParams } from "react-router-dom";
import { useI18n } from "../i18n/I18n";

export function AfterCallPage() {
  const { callId } = useParams();
  const { t } = useI18n();
  return (
    <section className="page" data-call-id={callId}>
      <h1>{t("afterCall.title")}</h1>
      <p className="muted">{t("afterCall.placeholder", { call: callId ?? "" })}</p>
    </section>
  );
}
