// /softphone: the browser softphone in full (dial pad, the call, microphone and speaker).
import { useEffect } from "react";
import { useI18n } from "../i18n/I18n";
import { SoftphonePanel } from "../softphone/SoftphonePanel";

export function SoftphonePage() {
  const { t } = useI18n();
  useEffect(() => {
    document.title = `${t("nav.softphone")} — ${t("app.title")}`;
  }, [t]);
  return (
    <div className="page">
      <h1>{t("nav.softphone")}</h1>
      <SoftphonePanel full />
      <p className="muted">{t("softphone.about")}</p>
    </div>
  );
}
