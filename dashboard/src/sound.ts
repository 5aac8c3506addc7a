/**
 * The audible signal of a new critical or major alarm, made in the page with the Web Audio API (oscillators and
 * a gain envelope: no sound file to load, nothing fetched). Critical: three rising two-tone pairs; major: two
 * beeps. Muted per screen (this browser), remembered in localStorage.
 *
 * Browsers start an AudioContext suspended until the person using the page has clicked or typed: the context is
 * created and resumed at the first such gesture, so an operator's screen plays after the login click. A wall
 * screen that nobody touches needs its kiosk browser started with `--autoplay-policy=no-user-gesture-required`
 * (docs/dashboard.md); while the browser still blocks sound, `blocked()` says so and the screen shows it.
 */
import type { AlarmSeverity } from './types.ts';

const LS_SOUND = 'citypulse.sound';

type Ctor = typeof AudioContext;
let ctx: AudioContext | undefined;

function context(): AudioContext | undefined {
  if (ctx) return ctx;
  const C =
    (globalThis as { AudioContext?: Ctor; webkitAudioContext?: Ctor }).AudioContext ??
    (globalThis as { webkitAudioContext?: Ctor }).webkitAudioContext;
  if (!C) return undefined;
  try {
    ctx = new C();
  } catch {
    return undefined;
  }
  return ctx;
}

/** Whether this screen plays the signal (default yes). */
export function soundEnabled(): boolean {
  return localStorage.getItem(LS_SOUND) !== 'off';
}

export function setSoundEnabled(on: boolean): void {
  localStorage.setItem(LS_SOUND, on ? 'on' : 'off');
  if (on) unlock();
}

/** True while the browser keeps the audio context suspended (no gesture yet, autoplay policy). */
export function blocked(): boolean {
  return !!ctx && ctx.state !== 'running';
}

/** Creates and resumes the context: call from a click or key press. */
export function unlock(): void {
  const c = context();
  if (c && c.state === 'suspended') void c.resume().catch(() => undefined);
}

/** Tones of each severity: [frequency Hz, start s, length s]. */
const PATTERNS: Partial<Record<AlarmSeverity, [number, number, number][]>> = {
  critical: [
    [880, 0, 0.18],
    [1175, 0.2, 0.18],
    [880, 0.5, 0.18],
    [1175, 0.7, 0.18],
    [880, 1.0, 0.18],
    [1175, 1.2, 0.18],
  ],
  major: [
    [660, 0, 0.22],
    [660, 0.35, 0.22],
  ],
};

/** Whether a new alarm of this severity is signalled (by sound and by a banner). */
export const signalled = (severity: AlarmSeverity) => PATTERNS[severity] !== undefined;

/** Plays the signal of `severity` unless muted; returns whether oscillators were started. */
export function playAlarm(severity: AlarmSeverity): boolean {
  const tones = PATTERNS[severity];
  if (!tones || !soundEnabled()) return false;
  const c = context();
  if (!c) return false;
  if (c.state === 'suspended') void c.resume().catch(() => undefined);
  const t0 = c.currentTime + 0.02;
  for (const [freq, at, len] of tones) {
    const osc = c.createOscillator();
    const gain = c.createGain();
    osc.type = 'square';
    osc.frequency.value = freq;
    // A short attack and release: no clicks at the edges.
    gain.gain.setValueAtTime(0, t0 + at);
    gain.gain.linearRampToValueAtTime(0.18, t0 + at + 0.015);
    gain.gain.setValueAtTime(0.18, t0 + at + len - 0.03);
    gain.gain.linearRampToValueAtTime(0, t0 + at + len);
    osc.connect(gain).connect(c.destination);
    osc.start(t0 + at);
    osc.stop(t0 + at + len + 0.01);
  }
  return true;
}

for (const ev of ['pointerdown', 'keydown'] as const) addEventListener(ev, unlock, { capture: true });
