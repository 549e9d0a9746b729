import { useEffect, useState } from "react";
import { ApiFailure, errorText } from "../api/errors";
import { useWorkspace } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import { formatDuration } from "../lib/format";

/**
 * A recording or voice message of the control API. The file needs the bearer token, which
 * an <audio src> cannot send: it is fetched as a blob on the first click and played from an
 * object URL (freed when the card closes).
 */
export function AudioButton({ path, label, ms }: { path: string; label: string; ms: number }) {
  const { t } = useI18n();
  const { controlAudio } = useWorkspace();
  const [url, setUrl] = useState<string | null>(null);
  const [state, setState] = useState<"idle" | "loading" | "missing" | "failed">("idle");
  const [problem, setProblem] = useState("");

  useEffect(
    () => () => {
      if (url !== null) URL.revokeObjectURL(url);
    },
    [url],
  );

  const load = async () => {
    setState("loading");
    try {
      const blob = await controlAudio(path);
      setUrl(URL.createObjectURL(blob));
      setState("idle");
    } catch (error) {
      if (error instanceof ApiFailure && error.status === 404) {
        setState("missing");
      } else {
        setProblem(errorText(error));
        setState("failed");
      }
    }
  };

  if (url !== null) {
    return <audio className="player" controls autoPlay src={url} aria-label={label} />;
  }
  return (
    <span className="audio">
      <button
        type="button"
        className="small"
        disabled={state === "loading"}
        onClick={() => void load()}
      >
        ▶ {label} {ms > 0 && <span className="muted">{formatDuration(ms / 1000)}</span>}
      </button>
      {state === "loading" && <span className="muted small"> {t("calls.loadingAudio")}</span>}
      {state === "missing" && <span className="error small"> {t("calls.audioMissing")}</span>}
      {state === "failed" && <span className="error small"> {problem}</span>}
    </span>
  );
}
