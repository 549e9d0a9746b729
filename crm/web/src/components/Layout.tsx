import { NavLink, Outlet } from "react-router-dom";
import { useSession, useWorkspace } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import { SECTIONS } from "../nav";
import { LanguageSwitch } from "./LanguageSwitch";
import { NotificationsBell } from "./NotificationsBell";

export function Layout() {
  const { t, tv } = useI18n();
  const { logout, personName } = useWorkspace();
  const { me } = useSession();
  return (
    <div className="shell">
      <header className="topbar">
        <span className="brand">{t("app.title")}</span>
        <nav className="nav">
          {SECTIONS.map((section) => (
            <NavLink
              key={section.path}
              to={section.path}
              className={({ isActive }) =>
                [isActive ? "active" : "", section.comingSoon ? "soon" : ""].join(" ").trim()
              }
              title={section.comingSoon ? t("nav.notBuilt") : undefined}
            >
              {t(section.label)}
            </NavLink>
          ))}
        </nav>
        <div className="topbar-right">
          <NotificationsBell />
          <span className="me">
            {personName(me.user_id)}
            {me.role && <span className="muted"> · {tv("role", me.role)}</span>}
          </span>
          <LanguageSwitch />
          <button type="button" className="link" onClick={() => logout()}>
            {t("session.logout")}
          </button>
        </div>
      </header>
      <main>
        <Outlet />
      </main>
    </div>
  );
}
