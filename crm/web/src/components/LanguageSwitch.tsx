import { useI18n } from "../i18n/I18n";
import { LANGUAGES } from "../i18n/language";

export function LanguageSwitch() {
  const { language, setLanguage, t } = useI18n();
  return (
    <div className="language" role="group" aria-label={t("app.language")}>
      {LANGUAGES.map((code) => (
        <button
          key={code}
          type="button"
          className={code === language ? "link active" : "link"}
          aria-pressed={code === language}
          onClick={() => setLanguage(code)}
        >
          {code.toUpperCase()}
        </button>
      ))}
    </div>
  );
}
