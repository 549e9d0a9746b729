// The browser as one more SIP device of the user: JsSIP registered over SIP over WebSocket
// (RFC 7118) at the edge, WebRTC media terminated by the user's media node.
import * as JsSIP from "jssip";
import type { RTCSession } from "jssip/lib/RTCSession";
import type { RTCSessionEvent } from "jssip/lib/UA";
import type { SipCredentials } from "./credentials";
import { afterPop } from "../live/popGate";
import { Ringtone } from "./ringtone";

// How long an incoming call waits for its caller's card before ringing anyway.
const POP_GRACE_MS = 250;

declare global {
  interface Window {
    /** For the browser tests: when this browser started ringing for a caller (epoch ms). */
    __vpbxRings?: { peer: string; at_ms: number }[];
  }
}

export type Registration = "off" | "connecting" | "registered" | "failed" | "refused";
export type CallState = "idle" | "incoming" | "calling" | "talking";

export interface PhoneState {
  registration: Registration;
  call: CallState;
  peer: string;
  callId: string;
  muted: boolean;
  held: boolean;
  error: string;
}

export const IDLE: PhoneState = {
  registration: "off",
  call: "idle",
  peer: "",
  callId: "",
  muted: false,
  held: false,
  error: "",
};

export class Phone {
  private ua: JsSIP.UA | null = null;
  private session: RTCSession | null = null;
  private state: PhoneState = IDLE;
  private readonly ringtone = new Ringtone();
  private microphone = "";
  private domain = "";

  constructor(
    private readonly audio: HTMLAudioElement,
    private readonly onChange: (state: PhoneState) => void,
  ) {}

  start(url: string, credentials: SipCredentials): void {
    this.stop();
    const socket = new JsSIP.WebSocketInterface(url);
    const ua = new JsSIP.UA({
      sockets: [socket],
      uri: `sip:${credentials.username}@${credentials.domain}`,
      authorization_user: credentials.username,
      password: credentials.password,
      register: true,
      session_timers: false,
      user_agent: "vpbx-workspace",
    });
    ua.on("connecting", () => this.set({ registration: "connecting" }));
    ua.on("registered", () => this.set({ registration: "registered", error: "" }));
    ua.on("unregistered", () => this.set({ registration: "off" }));
    ua.on("registrationFailed", (event) => {
      const status = event.response?.status_code ?? 0;
      // 401/403 after the challenge: these credentials are gone (device replaced).
      this.set({
        registration: status === 401 || status === 403 ? "refused" : "failed",
        error: event.cause ?? String(status),
      });
    });
    ua.on("newRTCSession", (event: RTCSessionEvent) => this.adopt(event));
    this.ua = ua;
    this.domain = credentials.domain;
    ua.start();
  }

  /** REGISTER again (after a refusal of credentials the node may not have loaded yet). */
  register(): void {
    this.ua?.register();
  }

  stop(): void {
    this.ringtone.stop();
    this.session = null;
    const ua = this.ua;
    this.ua = null;
    if (ua) ua.stop();
    this.set({ ...IDLE });
  }

  setDevices(microphone: string, speaker: string): void {
    this.microphone = microphone;
    this.ringtone.setSink(speaker);
    const sinkable = this.audio as HTMLAudioElement & { setSinkId?: (id: string) => Promise<void> };
    if (sinkable.setSinkId) void sinkable.setSinkId(speaker).catch(() => undefined);
  }

  call(target: string): void {
    if (!this.ua || this.session) return;
    this.ua.call(`sip:${target}@${this.domain}`, {
      mediaConstraints: { audio: this.audioConstraint(), video: false },
      rtcOfferConstraints: { offerToReceiveAudio: true, offerToReceiveVideo: false },
    });
  }

  answer(): void {
    if (!this.session || this.state.call !== "incoming") return;
    this.ringtone.stop();
    this.session.answer({ mediaConstraints: { audio: this.audioConstraint(), video: false } });
  }

  hangUp(): void {
    this.session?.terminate();
  }

  toggleMute(): void {
    if (!this.session) return;
    if (this.state.muted) this.session.unmute({ audio: true });
    else this.session.mute({ audio: true });
  }

  toggleHold(): void {
    if (!this.session) return;
    if (this.state.held) this.session.unhold();
    else this.session.hold();
  }

  dtmf(tone: string): void {
    if (this.session && this.state.call === "talking") this.session.sendDTMF(tone);
  }

  transfer(target: string): void {
    if (!this.ua || !this.session || this.state.call !== "talking") return;
    // Blind: REFER to the target; the node takes the caller over and ends this leg.
    this.session.refer(`sip:${target}@${this.domain}`);
  }

  private audioConstraint(): MediaTrackConstraints | boolean {
    return this.microphone ? { deviceId: { exact: this.microphone } } : true;
  }

  private adopt(event: RTCSessionEvent): void {
    if (this.session) {
      // Already on a call: the node's other devices or voicemail take this one.
      event.session.terminate({ status_code: 486 });
      return;
    }
    const session = event.session;
    this.session = session;
    const incoming = event.originator === "remote";
    const peer = session.remote_identity.uri.user ?? "";
    const callId = (event.request as { call_id?: string }).call_id ?? "";
    if (incoming) {
      // The card first, then the ring (popGate.ts).
      void afterPop(peer, POP_GRACE_MS).then(() => {
        if (this.session !== session || !session.isInProgress()) return;
        (window.__vpbxRings ??= []).push({ peer, at_ms: Date.now() });
        this.set({ call: "incoming", peer, callId, muted: false, held: false });
        this.ringtone.start();
      });
    } else {
      this.set({ call: "calling", peer, callId, muted: false, held: false });
    }
    session.on("peerconnection", ({ peerconnection }) => this.attach(peerconnection));
    if (!incoming && session.connection) this.attach(session.connection);
    session.on("confirmed", () => {
      this.ringtone.stop();
      this.set({ call: "talking" });
    });
    session.on("muted", () => this.set({ muted: true }));
    session.on("unmuted", () => this.set({ muted: false }));
    session.on("hold", () => this.set({ held: true }));
    session.on("unhold", () => this.set({ held: false }));
    const done = () => {
      this.ringtone.stop();
      if (this.session === session) this.session = null;
      this.audio.srcObject = null;
      this.set({ call: "idle", peer: "", callId: "", muted: false, held: false });
    };
    session.on("ended", done);
    session.on("failed", done);
  }

  private attach(connection: RTCPeerConnection): void {
    connection.addEventListener("track", (event) => {
      const [stream] = event.streams;
      if (stream) this.audio.srcObject = stream;
    });
  }

  private set(changes: Partial<PhoneState>): void {
    this.state = { ...this.state, ...changes };
    this.onChange(this.state);
  }
}
