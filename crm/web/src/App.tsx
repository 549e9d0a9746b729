import { lazy, Suspense, useCallback } from "react";
import { BrowserRouter, Navigate, Route, Routes, useLocation } from "react-router-dom";
import type { ReactNode } from "react";
import { crmClient } from "./api/client";
import { errorText, unwrap } from "./api/errors";
import type { WorkspaceConfig } from "./api/types";
import { useWorkspace, WorkspaceProvider } from "./auth/Workspace";
import { Layout } from "./components/Layout";
import { I18nProvider, useI18n } from "./i18n/I18n";
import { useLoad } from "./lib/useLoad";
import { SECTIONS } from "./nav";
import { AfterCall } from "./pages/AfterCall";
import { CompaniesPage } from "./pages/CompaniesPage";
import { CompanyCard } from "./pages/CompanyCard";
import { CompanyForm } from "./pages/CompanyForm";
import { ContactCard } from "./pages/ContactCard";
import { ContactForm } from "./pages/ContactForm";
import { ContactsPage } from "./pages/ContactsPage";
import { DealsBoard } from "./pages/DealsBoard";
import { LoginPage } from "./pages/LoginPage";
import { ScriptsPage } from "./pages/ScriptsPage";
import { NotBuilt, NotFound } from "./pages/NotBuilt";
import { TasksPage } from "./pages/TasksPage";
import { SoftphonePage } from "./pages/SoftphonePage";
import { SupervisorPage } from "./pages/SupervisorPage";

// The charts' library is loaded with the page that needs it (vite.config.ts).
const ReportsPage = lazy(async () => ({
  default: (await import("./pages/ReportsPage")).ReportsPage,
}));

export function App() {
  return (
    <I18nProvider>
      <ConfigGate>
        {(config) => (
          <WorkspaceProvider config={config}>
            <BrowserRouter>
              <AppRoutes />
            </BrowserRouter>
          </WorkspaceProvider>
        )}
      </ConfigGate>
    </I18nProvider>
  );
}

/** /config.json first: it says where the control API (the login) is. */
function ConfigGate({ children }: { children: (config: WorkspaceConfig) => ReactNode }) {
  const { t } = useI18n();
  const load = useCallback(async () => unwrap(await crmClient(null).GET("/config.json")), []);
  const { data, error, reload } = useLoad(load, "config");
  if (data !== undefined) return <>{children(data)}</>;
  if (error) {
    return (
      <div className="centered">
        <p className="error">{t("app.error", { message: errorText(error) })}</p>
        <button type="button" onClick={reload}>
          {t("app.retry")}
        </button>
      </div>
    );
  }
  return <div className="centered muted">{t("app.loading")}</div>;
}

function RequireSession({ children }: { children: ReactNode }) {
  const { session } = useWorkspace();
  const location = useLocation();
  if (session === null) {
    return <Navigate to="/login" replace state={{ from: location.pathname + location.search }} />;
  }
  return <>{children}</>;
}

function AppRoutes() {
  return (
    <Routes>
      <Route path="/login" element={<LoginPage />} />
      <Route
        element={
          <RequireSession>
            <Layout />
          </RequireSession>
        }
      >
        <Route index element={<Navigate to="/contacts" replace />} />
        <Route path="contacts" element={<ContactsPage />} />
        <Route path="contacts/new" element={<ContactForm />} />
        <Route path="contacts/:contactId" element={<ContactCard />} />
        <Route path="contacts/:contactId/edit" element={<ContactForm />} />
        <Route path="tasks" element={<TasksPage />} />
        <Route path="deals" element={<DealsBoard />} />
        <Route path="companies" element={<CompaniesPage />} />
        <Route path="companies/new" element={<CompanyForm />} />
        <Route path="companies/:companyId" element={<CompanyCard />} />
        <Route path="companies/:companyId/edit" element={<CompanyForm />} />
        <Route path="after-call/:callId" element={<AfterCall />} />
        <Route path="scripts" element={<ScriptsPage />} />
        <Route path="softphone" element={<SoftphonePage />} />
        <Route path="supervisor" element={<SupervisorPage />} />
        <Route
          path="reports"
          element={
            <Suspense fallback={<p className="page muted">…</p>}>
              <ReportsPage />
            </Suspense>
          }
        />
        {SECTIONS.filter((section) => section.comingSoon !== null).map((section) => (
          <Route key={section.path} path={section.path} element={<NotBuilt section={section} />} />
        ))}
        <Route path="*" element={<NotFound />} />
      </Route>
    </Routes>
  );
}
