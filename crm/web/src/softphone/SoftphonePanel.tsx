// The softphone's controls: status, dial pad, the incoming or current call, devices.
import { useEffect, useState, type FormEvent } from "react";
import { useI18n } from "../i18n/I18n";
import { useSoftphone } from "./Softphone";

const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];

export function SoftphonePanel({ full = false }: { full?: boolean }) {
  const { t } = useI18n();
  const { available, state, problem, phone, dial, notice } = useSoftphone();
  const [number, setNumber] = useState("");
  const [transferTo, setTransferTo] = useState("");

  if (!available) {
    return full ? <p className="muted">{t("softphone.notConfigured")}</p> : null;
  }
  const submit = (event: FormEvent) => {
    event.preventDefault();
    void dial(number);
  };
  const onCall = state.call !== "idle";
  return (
    <section className="softphone" aria-label={t("nav.softphone")} data-registration={state.registration}>
      <div className="softphone-status">
        <span className={`dot ${state.registration}`} />
        {t(`softphone.reg.${state.registration}`)}
        {problem && <span className="error"> {problem}</span>}
      </div>
      {state.call === "incoming" && (
        <div className="softphone-call incoming">
          <strong>{t("softphone.incoming", { peer: state.peer })}</strong>
          <button type="button" onClick={() => phone?.answer()}>
            {t("softphone.answer")}
          </button>
          <button type="button" className="danger" onClick={() => phone?.hangUp()}>
            {t("softphone.decline")}
          </button>
        </div>
      )}
      {(state.call === "calling" || state.call === "talking") && (
        <div className="softphone-call">
          <strong>
            {state.call === "calling"
              ? t("softphone.calling", { peer: state.peer })
              : t("softphone.talking", { peer: state.peer })}
          </strong>
          <button type="button" className="danger" onClick={() => phone?.hangUp()}>
            {t("softphone.hangUp")}
          </button>
          <button type="button" onClick={() => phone?.toggleMute()} aria-pressed={state.muted}>
            {state.muted ? t("softphone.unmute") : t("softphone.mute")}
          </button>
          <button type="button" onClick={() => phone?.toggleHold()} aria-pressed={state.held}>
            {state.held ? t("softphone.unhold") : t("softphone.hold")}
          </button>
          <div className="keypad">
            {KEYS.map((key) => (
              <button key={key} type="button" onClick={() => phone?.dtmf(key)}>
                {key}
              </button>
            ))}
          </div>
          <form
            onSubmit={(event) => {
              event.preventDefault();
              if (transferTo.trim()) phone?.transfer(transferTo.trim());
            }}
          >
            <input
              value={transferTo}
              onChange={(event) => setTransferTo(event.target.value)}
              placeholder={t("softphone.transferTo")}
              aria-label={t("softphone.transferTo")}
            />
            <button type="submit">{t("softphone.transfer")}</button>
          </form>
        </div>
      )}
      {!onCall && (
        <form className="softphone-dial" onSubmit={submit}>
          <input
            value={number}
            onChange={(event) => setNumber(event.target.value)}
            placeholder={t("softphone.dialPlaceholder")}
            aria-label={t("softphone.dialPlaceholder")}
          />
          <button type="submit">{t("softphone.call")}</button>
        </form>
      )}
      {notice && <p className="muted">{notice}</p>}
      {full && <DeviceChoice />}
    </section>
  );
}

const MIC_KEY = "vpbx.softphone.microphone";
const SPEAKER_KEY = "vpbx.softphone.speaker";

function DeviceChoice() {
  const { t } = useI18n();
  const { phone } = useSoftphone();
  const [devices, setDevices] = useState<MediaDeviceInfo[]>([]);
  const [microphone, setMicrophone] = useState(() => localStorage.getItem(MIC_KEY) ?? "");
  const [speaker, setSpeaker] = useState(() => localStorage.getItem(SPEAKER_KEY) ?? "");

  useEffect(() => {
    const media = navigator.mediaDevices;
    if (!media?.enumerateDevices) return undefined;
    const load = () => void media.enumerateDevices().then(setDevices, () => setDevices([]));
    load();
    media.addEventListener("devicechange", load);
    return () => media.removeEventListener("devicechange", load);
  }, []);

  useEffect(() => {
    localStorage.setItem(MIC_KEY, microphone);
    localStorage.setItem(SPEAKER_KEY, speaker);
    phone?.setDevices(microphone, speaker);
  }, [phone, microphone, speaker]);

  const sinkSupported = "setSinkId" in HTMLMediaElement.prototype;
  return (
    <div className="softphone-devices">
      <label>
        {t("softphone.microphone")}
        <select value={microphone} onChange={(event) => setMicrophone(event.target.value)}>
          <option value="">{t("softphone.defaultDevice")}</option>
          {devices
            .filter((device) => device.kind === "audioinput" && device.deviceId)
            .map((device) => (
              <option key={device.deviceId} value={device.deviceId}>
                {device.label || device.deviceId.slice(0, 8)}
              </option>
            ))}
        </select>
      </label>
      <label>
        {t("softphone.speaker")}
        <select
          value={speaker}
          disabled={!sinkSupported}
          onChange={(event) => setSpeaker(event.target.value)}
        >
          <option value="">{t("softphone.defaultDevice")}</option>
          {devices
            .filter((device) => device.kind === "audiooutput" && device.deviceId)
            .map((device) => (
              <option key={device.deviceId} value={device.deviceId}>
                {device.label || device.deviceId.slice(0, 8)}
              </option>
            ))}
        </select>
      </label>
    </div>
  );
}
