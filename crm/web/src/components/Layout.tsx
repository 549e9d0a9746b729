import { NavLink, Outlet } from "react-router-dom";
import { isManager } from "../auth/session";
import { useSession, useWorkspace } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import { LiveProvider } from "../live/LiveFeed";
import { PresenceSelect } from "../live/Presence";
import { ScreenPops } from "../live/ScreenPop";
import { SECTIONS } from "../nav";
import { SoftphoneProvider } from "../softphone/Softphone";
import { SoftphonePanel } from "../softphone/SoftphonePanel";
import { LanguageSwitch } from "./LanguageSwitch";
import { NotificationsBell } from "./NotificationsBell";

/** The logged-in shell; the live feed and the softphone live as long as it does (every
 * page), so a call rings and pops up wherever the person is in the workspace. */
export function Layout() {
  return (
    <LiveProvider>
      <SoftphoneProvider>
        <Shell />
      </SoftphoneProvider>
    </LiveProvider>
  );
}

function Shell() {
  const { t, tv } = useI18n();
  const { logout, personName } = useWorkspace();
  const { me } = useSession();
  return (
    <div className="shell">
      <header className="topbar">
        <span className="brand">{t("app.title")}</span>
        <nav className="nav">
          {SECTIONS.filter((section) => !section.managersOnly || isManager(me)).map((section) => (
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
          <PresenceSelect />
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
      <ScreenPops />
      <main>
        <Outlet />
      </main>
      <div className="softphone-dock">
        <SoftphonePanel />
      </div>
    </div>
  );
}
