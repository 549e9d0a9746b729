// The softphone: this browser's SIP device, registered while the person is logged in, when
// the CRM names a SIP WebSocket (VPBX_SIP_WS_URL). Click-to-call goes through it once it
// is registered, else through the control API's POST /v1/calls (which rings the person's
// other phones first).
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState } from "react";
import type { ReactNode } from "react";
import { unwrap } from "../api/errors";
import { useSession, useWorkspace } from "../auth/Workspace";
import { useI18n } from "../i18n/I18n";
import {
  browserDeviceName,
  dialTarget,
  readCredentials,
  writeCredentials,
  type SipCredentials,
} from "./credentials";
import { IDLE, Phone, type PhoneState } from "./phone";

export interface Softphone {
  /** false: this installation has no SIP WebSocket, the softphone is hidden. */
  available: boolean;
  state: PhoneState;
  /** Why there is no softphone (no extension, the device could not be made). */
  problem: string;
  phone: Phone | null;
  /** Call ``target`` (an extension or a number): through this browser when registered,
   * else by the control API ringing the person's phones first. */
  dial(target: string): Promise<void>;
  /** What the last click-to-call said (placed through the API, or the error). */
  notice: string;
}

const SoftphoneContext = createContext<Softphone | null>(null);

// How long a new device's refusals are taken for the nodes not having loaded it yet.
const NEW_DEVICE_GRACE_MS = 60_000;
const NEW_DEVICE_RETRIES = 6;

export function SoftphoneProvider({ children }: { children: ReactNode }) {
  const { config, control } = useWorkspace();
  const { me } = useSession();
  const { t } = useI18n();
  const [state, setState] = useState<PhoneState>(IDLE);
  const [problem, setProblem] = useState("");
  const [notice, setNotice] = useState("");
  const audioRef = useRef<HTMLAudioElement | null>(null);
  const phoneRef = useRef<Phone | null>(null);
  const available = config.sip_ws_url !== "";
  const userId = me.user_id ?? null;

  const newDevice = useCallback(async (): Promise<SipCredentials> => {
    const device = unwrap(
      await control.POST("/v1/users/me/devices", {
        body: { kind: "browser", name: browserDeviceName(navigator.userAgent) },
      }),
    );
    return {
      deviceId: device.id,
      username: device.username,
      password: device.password,
      domain: device.sip_domain,
      createdAt: Date.now(),
    };
  }, [control]);

  useEffect(() => {
    if (!available || userId === null || audioRef.current === null) return undefined;
    let stopped = false;
    let renewed = false;
    let retries = 0;
    let retryTimer: number | null = null;
    let current: SipCredentials | null = null;
    const phone = new Phone(audioRef.current, (next) => {
      if (stopped) return;
      setState(next);
      if (next.registration !== "refused" || retryTimer !== null) return;
      const age = Date.now() - (current?.createdAt ?? 0);
      if (age < NEW_DEVICE_GRACE_MS && retries < NEW_DEVICE_RETRIES) {
        // A device made a moment ago: the node has not loaded it yet. Ask again soon.
        retryTimer = window.setTimeout(() => {
          retryTimer = null;
          retries += 1;
          phone.register();
        }, 1000 * 2 ** Math.min(retries, 3));
      } else if (!renewed) {
        // The device was replaced (five browsers later) or deleted: make a new one, once.
        renewed = true;
        writeCredentials(window.localStorage, userId, null);
        void begin();
      }
    });
    phoneRef.current = phone;
    const begin = async () => {
      let credentials = readCredentials(window.localStorage, userId);
      if (credentials === null) {
        try {
          credentials = await newDevice();
        } catch (error) {
          if (!stopped) setProblem(t("softphone.noDevice", { message: String(error) }));
          return;
        }
        writeCredentials(window.localStorage, userId, credentials);
      }
      current = credentials;
      if (!stopped) phone.start(config.sip_ws_url, credentials);
    };
    void begin();
    return () => {
      stopped = true;
      if (retryTimer !== null) window.clearTimeout(retryTimer);
      phone.stop();
      phoneRef.current = null;
    };
  }, [available, userId, config.sip_ws_url, newDevice, t]);

  const dial = useCallback(
    async (text: string) => {
      const target = dialTarget(text);
      if (target === null) return;
      const phone = phoneRef.current;
      if (phone !== null && state.registration === "registered" && state.call === "idle") {
        setNotice("");
        phone.call(target);
        return;
      }
      try {
        unwrap(await control.POST("/v1/calls", { body: { to: target } }));
        setNotice(t("softphone.placedViaApi"));
      } catch (error) {
        setNotice(t("softphone.callFailed", { message: String(error) }));
      }
    },
    [control, state.registration, state.call, t],
  );

  const value = useMemo<Softphone>(
    () => ({ available, state, problem, phone: phoneRef.current, dial, notice }),
    [available, state, problem, dial, notice],
  );
  return (
    <SoftphoneContext.Provider value={value}>
      {children}
      {/* The far end's voice; kept mounted so the phone can attach to it at any time. */}
      <audio ref={audioRef} autoPlay data-testid="softphone-audio" />
    </SoftphoneContext.Provider>
  );
}

export function useSoftphone(): Softphone {
  const value = useContext(SoftphoneContext);
  if (value === null) throw new Error("useSoftphone outside SoftphoneProvider");
  return value;
}
