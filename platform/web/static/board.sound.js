// The board's alarm sound (Web Audio, generated here: no sound file is loaded). Patterns after IEC 60601-1-8:
// an emergency (high priority) is a burst of 5 pulses, 3 + 2, repeated every 3 s; an urgent alarm (medium
// priority) is a burst of 3 slower, lower pulses repeated every 8 s; technical and routine alarms are silent
// (visual only). The sound plays while an alarm is raised and not yet acknowledged: acknowledging silences it
// on every board at once, because every board hears the change on the alarm stream.
// Browsers refuse to start audio without a user's gesture, so the page shows an "enable sound" button;
// until it is pressed, the page says that there is an alarm it cannot sound.
"use strict";

(function () {
  const PATTERNS = {
    emergency: { freq: 880, pulse: 0.15, starts: [0, 0.25, 0.5, 1.0, 1.25], period_ms: 3000 },
    urgent: { freq: 587, pulse: 0.2, starts: [0, 0.35, 0.7], period_ms: 8000 },
  };

  class AlarmSound {
    constructor() {
      this.ctx = null;
      this.wanted = "off"; // what the open alarms call for
      this.timer = null;
      this.bursts = 0;
      this.onChange = () => {};
    }

    get enabled() { return this.ctx !== null && this.ctx.state === "running"; }

    async enable() {
      if (!this.ctx) this.ctx = new AudioContext();
      await this.ctx.resume();
      this._restart();
      this.onChange();
    }

    async disable() {
      if (this.ctx) await this.ctx.suspend();
      this._restart();
      this.onChange();
    }

    // pattern: "emergency", "urgent" or "off"
    want(pattern) {
      if (pattern === this.wanted) return;
      this.wanted = pattern;
      this._restart();
      this.onChange();
    }

    get playing() { return this.enabled && this.wanted !== "off" ? this.wanted : "off"; }

    _restart() {
      window.clearTimeout(this.timer);
      this.timer = null;
      document.body.dataset.soundWanted = this.wanted;
      document.body.dataset.sound = this.playing;
      if (this.playing !== "off") this._loop();
    }

    _loop() {
      const pattern = PATTERNS[this.playing];
      if (!pattern) return;
      this._burst(pattern);
      this.timer = window.setTimeout(() => this._loop(), pattern.period_ms);
    }

    _burst(pattern) {
      const now = this.ctx.currentTime + 0.02;
      for (const start of pattern.starts) this._pulse(pattern.freq, now + start, pattern.pulse);
      this.bursts += 1;
      document.body.dataset.soundBursts = String(this.bursts);
    }

    _pulse(freq, at, length) {
      // A tone with a few harmonics (IEC asks for at least four within 300-4000 Hz), with soft edges.
      const gain = this.ctx.createGain();
      gain.gain.setValueAtTime(0, at);
      gain.gain.linearRampToValueAtTime(0.25, at + 0.02);
      gain.gain.setValueAtTime(0.25, at + length - 0.03);
      gain.gain.linearRampToValueAtTime(0, at + length);
      gain.connect(this.ctx.destination);
      for (const [multiple, level] of [[1, 1], [2, 0.5], [3, 0.35], [4, 0.25], [5, 0.15]]) {
        const osc = this.ctx.createOscillator();
        const part = this.ctx.createGain();
        osc.type = "sine";
        osc.frequency.value = freq * multiple;
        part.gain.value = level / 2.25;
        osc.connect(part).connect(gain);
        osc.start(at);
        osc.stop(at + length + 0.01);
      }
    }
  }

  window.AlarmSound = AlarmSound;
})();
