import { useCallback, useEffect, useRef, useState } from "react";
import { useNavigate } from "react-router-dom";
import { unwrap } from "../api/errors";
import type { Notification } from "../api/types";
import { useWorkspace } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import { formatDateTime } from "../lib/format";

export const POLL_MS = 5000;

/** Unread notifications, asked for every few seconds while the tab is visible. */
export function NotificationsBell() {
  const { t, locale } = useI18n();
  const { crm } = useWorkspace();
  const navigate = useNavigate();
  const [items, setItems] = useState<Notification[]>([]);
  const [total, setTotal] = useState(0);
  const [open, setOpen] = useState(false);
  const box = useRef<HTMLDivElement>(null);

  const poll = useCallback(async () => {
    try {
      const page = unwrap(
        await crm.GET("/v1/notifications", { params: { query: { unread: true, limit: 20 } } }),
      );
      setItems(page.items);
      setTotal(page.total);
    } catch {
      // the next poll tries again; a lapsed session is handled by the client
    }
  }, [crm]);

  useEffect(() => {
    void poll();
    const timer = window.setInterval(() => {
      if (document.visibilityState === "visible") void poll();
    }, POLL_MS);
    const onVisible = () => {
      if (document.visibilityState === "visible") void poll();
    };
    document.addEventListener("visibilitychange", onVisible);
    return () => {
      window.clearInterval(timer);
      document.removeEventListener("visibilitychange", onVisible);
    };
  }, [poll]);

  useEffect(() => {
    if (!open) return undefined;
    const close = (event: MouseEvent) => {
      if (box.current && !box.current.contains(event.target as Node)) setOpen(false);
    };
    document.addEventListener("mousedown", close);
    return () => document.removeEventListener("mousedown", close);
  }, [open]);

  const markRead = async (notification: Notification) => {
    await crm.POST("/v1/notifications/{notification_id}/read", {
      params: { path: { notification_id: notification.id } },
    });
  };

  const openOne = async (notification: Notification) => {
    setOpen(false);
    await markRead(notification);
    void poll();
    navigate(notification.contact_id ? `/contacts/${notification.contact_id}` : "/tasks");
  };

  const readAll = async () => {
    await Promise.all(items.map(markRead));
    void poll();
  };

  return (
    <div className="bell" ref={box}>
      <button
        type="button"
        className="bell-button"
        aria-label={`${t("bell.title")}: ${total}`}
        aria-expanded={open}
        onClick={() => setOpen((value) => !value)}
      >
        <svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true">
          <path
            fill="currentColor"
            d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22zm7-6V11a7 7 0 0 0-5.5-6.84V3a1.5 1.5 0 0 0-3 0v1.16A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2z"
          />
        </svg>
        {total > 0 && <span className="badge">{total > 99 ? "99+" : total}</span>}
      </button>
      {open && (
        <div className="bell-panel" role="dialog" aria-label={t("bell.title")}>
          <div className="bell-head">
            <strong>{t("bell.title")}</strong>
            {items.length > 0 && (
              <button type="button" className="link" onClick={() => void readAll()}>
                {t("bell.readAll")}
              </button>
            )}
          </div>
          {items.length === 0 ? (
            <p className="muted">{t("bell.empty")}</p>
          ) : (
            <ul>
              {items.map((item) => (
                <li key={item.id}>
                  <button type="button" className="bell-item" onClick={() => void openOne(item)}>
                    <span>{item.text}</span>
                    <span className="muted small">{formatDateTime(item.created_at, locale)}</span>
                  </button>
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
    </div>
  );
}
