// Notifications: a short tone (Web Audio, no sound file) and a desktop notification when
// the tab is hidden. Browsers block audio until the user acts, hence enable().

export class Notifier {
  constructor() {
    this.audio = null;
  }

  /** Called from a click: unlock audio and ask for desktop notifications. */
  async enable() {
    if (!this.audio && window.AudioContext) this.audio = new AudioContext();
    if (this.audio && this.audio.state === "suspended") await this.audio.resume();
    if (window.Notification && Notification.permission === "default") {
      try {
        await Notification.requestPermission();
      } catch {
        // some browsers refuse outside a secure context: the tone is enough
      }
    }
  }

  /** Tell the agent something happened, if the tab is not in view. */
  alert(title, body) {
    if (!document.hidden) return;
    this.tone();
    if (window.Notification && Notification.permission === "granted") {
      try {
        new Notification(title, { body: body || "", tag: "lcx" });
      } catch {
        // notifications may be unavailable (e.g. no service worker on mobile)
      }
    }
  }

  tone() {
    if (!this.audio || this.audio.state !== "running") return;
    const oscillator = this.audio.createOscillator();
    const gain = this.audio.createGain();
    oscillator.frequency.value = 880;
    gain.gain.setValueAtTime(0.15, this.audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, this.audio.currentTime + 0.3);
    oscillator.connect(gain).connect(this.audio.destination);
    oscillator.start();
    oscillator.stop(this.audio.currentTime + 0.3);
  }
}
