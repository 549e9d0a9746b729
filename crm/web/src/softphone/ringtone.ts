// The ring of an incoming call, made with WebAudio (no audio file to fetch): the Russian
// ringing tone, 425 Hz, one second on, three off. Browsers let a page play sound only
// after the person interacted with it; the workspace's login click counts.

export class Ringtone {
  private context: AudioContext | null = null;
  private timer: number | null = null;
  private sinkId = "";

  setSink(sinkId: string): void {
    this.sinkId = sinkId;
  }

  start(): void {
    if (this.timer !== null) return;
    const Context = window.AudioContext;
    if (!Context) return;
    this.context = new Context();
    const sink = this.sinkId;
    const withSink = this.context as AudioContext & { setSinkId?: (id: string) => Promise<void> };
    if (sink && withSink.setSinkId) void withSink.setSinkId(sink).catch(() => undefined);
    const ring = () => {
      const context = this.context;
      if (!context) return;
      const oscillator = context.createOscillator();
      const gain = context.createGain();
      oscillator.frequency.value = 425;
      gain.gain.value = 0.2;
      oscillator.connect(gain).connect(context.destination);
      oscillator.start();
      oscillator.stop(context.currentTime + 1);
    };
    ring();
    this.timer = window.setInterval(ring, 4000);
  }

  stop(): void {
    if (this.timer !== null) window.clearInterval(this.timer);
    this.timer = null;
    const context = this.context;
    this.context = null;
    if (context) void context.close().catch(() => undefined);
  }
}
