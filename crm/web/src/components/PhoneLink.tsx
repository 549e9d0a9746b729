import { useI18n } from "../i18n/I18n";
import { formatPhone } from "../lib/phone";

/**
 * A phone number to call. Until the browser softphone exists this is a tel: link (the
 * system's phone app); click-to-call through the control API replaces it here.
 */
export function PhoneLink({ phone }: { phone: string }) {
  const { t } = useI18n();
  return (
    <a className="phone" href={`tel:${phone}`} title={t("contact.call")}>
      {formatPhone(phone)}
    </a>
  );
}
