import { useState, type FormEvent } from "react";
import { Navigate, useLocation } from "react-router-dom";
import { ApiFailure, errorText } from "../api/errors";
import { useWorkspace } from "../auth/Workspace";
import { LanguageSwitch } from "../components/LanguageSwitch";
import { useI18n } from "../i18n/I18n";

export function LoginPage() {
  const { t } = useI18n();
  const { session, login, ended } = useWorkspace();
  const location = useLocation();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);

  if (session !== null) {
    const from = (location.state as { from?: string } | null)?.from ?? "/contacts";
    return <Navigate to={from} replace />;
  }

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setProblem(null);
    try {
      await login(email.trim(), password);
    } catch (error) {
      if (error instanceof ApiFailure && (error.status === 401 || error.status === 422)) {
        setProblem(t("login.failed"));
      } else if (error instanceof ApiFailure && error.status === 429) {
        setProblem(t("login.tooMany"));
      } else {
        setProblem(t("login.unreachable", { message: errorText(error) }));
      }
      setBusy(false);
    }
  };

  return (
    <div className="login">
      <form className="login-box" onSubmit={(event) => void submit(event)}>
        <div className="login-head">
          <h1>{t("login.title")}</h1>
          <LanguageSwitch />
        </div>
        {ended === "expired" && problem === null && <p className="notice">{t("login.expired")}</p>}
        <label>
          {t("login.email")}
          <input
            type="email"
            name="email"
            autoComplete="username"
            required
            value={email}
            onChange={(event) => setEmail(event.target.value)}
          />
        </label>
        <label>
          {t("login.password")}
          <input
            type="password"
            name="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(event) => setPassword(event.target.value)}
          />
        </label>
        {problem !== null && (
          <p className="error" role="alert">
            {problem}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? t("login.submitting") : t("login.submit")}
        </button>
      </form>
    </div>
  );
}
