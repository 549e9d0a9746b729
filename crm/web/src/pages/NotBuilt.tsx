import { Link } from "react-router-dom";
import { useI18n } from "../i18n/I18n";
import type { Section } from "../nav";

export function NotBuilt({ section }: { section: Section }) {
  const { t } = useI18n();
  return (
    <section className="page narrow">
      <h1>{t("notBuilt.title", { section: t(section.label) })}</h1>
      {section.comingSoon !== null && (
        <p className="muted">{t("notBuilt.text", { what: t(section.comingSoon) })}</p>
      )}
    </section>
  );
}

export function NotFound() {
  const { t } = useI18n();
  return (
    <section className="page narrow">
      <h1>404</h1>
      <p>
        <Link to="/contacts">{t("contact.back")}</Link>
      </p>
    </section>
  );
}
