import { useState } from "react";
import { useSession } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import { otherOwner } from "../live/protocol";
import { formatPhone } from "../lib/phone";
import { useSoftphone } from "../softphone/Softphone";

/**
 * A phone number to call: through the browser softphone when it is registered, else the
 * control API rings the person's phones first (POST /v1/calls). Calling a colleague's
 * client asks first, naming the colleague.
 */
export function PhoneLink({
  phone,
  ownerUserId,
  ownerName,
}: {
  phone: string;
  ownerUserId?: string | null;
  ownerName?: string;
}) {
  const { t } = useI18n();
  const { me } = useSession();
  const { dial } = useSoftphone();
  const [asking, setAsking] = useState(false);
  const owner = otherOwner(
    { owner_user_id: ownerUserId ?? null, owner_name: ownerName ?? "" },
    me.user_id,
  );
  return (
    <span className="phone-link">
      <a
        className="phone"
        href={`tel:${phone}`}
        title={t("contact.call")}
        onClick={(event) => {
          event.preventDefault();
          if (owner) setAsking(true);
          else void dial(phone);
        }}
      >
        {formatPhone(phone)}
      </a>
      {asking && owner && (
        <span className="warning" role="alert">
          {t("pop.clientOf", { name: owner })}{" "}
          <button
            type="button"
            onClick={() => {
              setAsking(false);
              void dial(phone);
            }}
          >
            {t("softphone.callAnyway")}
          </button>
          <button type="button" className="link" onClick={() => setAsking(false)}>
            {t("softphone.cancel")}
          </button>
        </span>
      )}
    </span>
  );
}
