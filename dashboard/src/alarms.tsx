/**
 * Alarms on every screen: the overview's panel of open alarms, the banner that announces a new critical or
 * major alarm (rule, ward, device, value, a link to it) on every open screen, and the acknowledge and clear
 * actions with their dialog (a note; clearing needs one). The server sends each `alarm` event to every socket.
 * Acknowledge and clear need the operator role: a viewer sees the buttons disabled (and the API answers 403).
 *
 * "Open" is one thing everywhere: active + acknowledged, counted by the store (openCounts) for the header
 * badge, this panel and the alarm console alike.
 */
import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { api, ApiError } from './api.ts';
import { Dialog } from './dialog.tsx';
import { navigate, useStore } from './hooks.ts';
import type { Key } from './i18n.ts';
import { ruleName, type Store, zoneName } from './store.ts';
import type { AlarmRecord, AlarmSeverity } from './types.ts';
import { alarmValue } from './values.ts';

const SEVERITY_ORDER: AlarmSeverity[] = ['critical', 'major', 'minor', 'warning'];
const STATE_ORDER = ['active', 'acknowledged', 'cleared'];
const cap = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

export const severityLabel = (s: Store, sev: string) => s.t(`severity${cap(sev)}` as Key);
export const stateLabel = (s: Store, st: string) => s.t(`alarmState${cap(st)}` as Key);

export function sortAlarms(list: Iterable<AlarmRecord>): AlarmRecord[] {
  return [...list].sort(
    (a, b) =>
      STATE_ORDER.indexOf(a.state) - STATE_ORDER.indexOf(b.state) ||
      SEVERITY_ORDER.indexOf(a.severity) - SEVERITY_ORDER.indexOf(b.severity) ||
      b.raisedAt.localeCompare(a.raisedAt),
  );
}

/** A link inside the app (client-side navigation). */
export function AppLink(props: { href: string; testid?: string; class?: string; children: ComponentChildren }) {
  return (
    <a
      href={props.href}
      class={props.class}
      data-testid={props.testid}
      onClick={(e) => {
        e.preventDefault();
        navigate(props.href);
      }}
    >
      {props.children}
    </a>
  );
}

/** The device an alarm is about (a link to its page, by name when it has one), or nothing for a zone alarm. */
export function AlarmDevice(props: { a: AlarmRecord }) {
  const s = useStore();
  const { a } = props;
  if (a.scope !== 'device') return <span class="muted">–</span>;
  const name = s.devices.get(a.subject)?.name;
  return (
    <AppLink href={`/devices/${encodeURIComponent(a.subject)}`} testid="alarm-device">
      {name ? `${name} (${a.subject})` : a.subject}
    </AppLink>
  );
}

/** The ward of an alarm: its device's zone, or the zone it is about. */
export function alarmWard(s: Store, a: AlarmRecord): string {
  const z = a.scope === 'zone' ? a.subject : a.zone;
  return z ? zoneName(s, z) : '–';
}

/** Acknowledge and clear, each through a dialog asking for a note (required to clear). */
export function AlarmActions(props: { a: AlarmRecord }) {
  const s = useStore();
  const { a } = props;
  const [asking, setAsking] = useState<'acknowledge' | 'clear'>();
  const canAct = s.can('operator');
  const title = canAct ? undefined : s.t('viewerCannotAct');
  if (a.state === 'cleared') return null;
  return (
    <div class="alarm-actions">
      {a.state === 'active' && (
        <button type="button" data-testid="alarm-ack" disabled={!canAct} title={title} onClick={() => setAsking('acknowledge')}>
          {s.t('acknowledge')}
        </button>
      )}
      <button type="button" data-testid="alarm-clear" disabled={!canAct} title={title} onClick={() => setAsking('clear')}>
        {s.t('clear')}
      </button>
      {asking && <AlarmActionDialog a={a} what={asking} onClose={() => setAsking(undefined)} />}
    </div>
  );
}

function AlarmActionDialog(props: { a: AlarmRecord; what: 'acknowledge' | 'clear'; onClose: () => void }) {
  const s = useStore();
  const { a, what } = props;
  const [note, setNote] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const clearing = what === 'clear';
  const missing = clearing && note.trim() === '';
  const forMs = s.rules.find((r) => r.id === a.rule)?.forMs;
  const submit = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const body = note.trim() ? { note: note.trim() } : {};
      const updated = await api<AlarmRecord>(`/api/v1/alarms/${a.id}/${what}`, { method: 'POST', body });
      s.applyAlarm(updated);
      props.onClose();
    } catch (err) {
      setError(s.t('actionFailed', { detail: err instanceof ApiError ? `${err.code}: ${err.message}` : String(err) }));
      setBusy(false);
    }
  };
  return (
    <Dialog
      title={s.t(clearing ? 'clearTitle' : 'ackTitle')}
      testid="alarm-dialog"
      confirmLabel={s.t(clearing ? 'clear' : 'acknowledge')}
      confirmDisabled={busy || missing}
      onConfirm={() => void submit()}
      onCancel={props.onClose}
    >
      <p>
        <strong>{ruleName(s, a.rule)}</strong> · {alarmWard(s, a)} · {a.scope === 'device' ? a.subject : ''} · {alarmValue(s, a)}
      </p>
      <label class="field">
        {s.t(clearing ? 'clearNote' : 'ackNote')}
        <textarea
          data-testid="alarm-note"
          rows={3}
          maxLength={1000}
          value={note}
          onInput={(e) => setNote((e.target as HTMLTextAreaElement).value)}
        />
      </label>
      {clearing && missing && <p class="muted">{s.t('clearNoteRequired')}</p>}
      {clearing && forMs !== undefined && <p class="muted">{s.t('clearReraiseHint', { for: s.fmt.duration(forMs) })}</p>}
      {error && (
        <p class="error" data-testid="alarm-error">
          {error}
        </p>
      )}
    </Dialog>
  );
}

/** The overview's open alarms (active first, then by severity, newest first), with the one open count. */
export function AlarmPanel(props: { limit?: number; interactive?: boolean }) {
  const s = useStore();
  const list = sortAlarms([...s.alarms.values()].filter((a) => a.state !== 'cleared'));
  const shown = props.limit ? list.slice(0, props.limit) : list;
  const { open } = s.openCounts();
  return (
    <section class="panel alarms" data-testid="alarm-panel">
      <h2>
        {s.t('activeAlarms')}{' '}
        <span class="badge" data-testid="alarm-open-count" title={s.t('openAlarmsHint')}>
          {s.fmt.num(open, 0)}
        </span>
      </h2>
      <p class="muted hint">{s.t('openAlarmsHint')}</p>
      {shown.length === 0 && <p class="muted">{s.t('noAlarms')}</p>}
      <ul class="alarm-list">
        {shown.map((a) => (
          <li key={a.id} class={`alarm sev-${a.severity} st-${a.state}`} data-testid="alarm-row" data-alarm-id={a.id} data-state={a.state}>
            <div class="alarm-head">
              <span class={`sev sev-${a.severity}`}>{severityLabel(s, a.severity)}</span>
              <strong>{ruleName(s, a.rule)}</strong>
              <span class="alarm-state" data-testid="alarm-state">
                {stateLabel(s, a.state)}
              </span>
            </div>
            <div class="alarm-body">
              {alarmWard(s, a)} · <AlarmDevice a={a} /> · <span data-testid="alarm-value">{alarmValue(s, a)}</span>
              <br />
              <AppLink href={`/alarms/${a.id}`} class="muted">
                {s.fmt.dateTime(a.raisedAt)}
              </AppLink>
              {a.acknowledgedBy && <span class="muted"> · {s.t('acknowledgedBy', { who: a.acknowledgedBy })}</span>}
            </div>
            {props.interactive !== false && <AlarmActions a={a} />}
          </li>
        ))}
      </ul>
      {props.interactive !== false && list.length > shown.length && <AppLink href="/alarms">{s.t('alarmConsole')} →</AppLink>}
    </section>
  );
}

/** New critical and major alarms, announced on every screen (until dismissed; a wall screen keeps the latest five). */
export function Announcements(props: { dismissable?: boolean }) {
  const s = useStore();
  if (!s.announcements.length) return null;
  return (
    <div class="announcements" role="alert" aria-live="assertive">
      {s.announcements.map((a) => (
        <div
          key={a.id}
          class={`announcement sev-${a.severity} st-${a.state}`}
          data-testid="alarm-announcement"
          data-alarm-id={a.id}
          data-state={a.state}
          data-severity={a.severity}
        >
          <strong>{s.t('newAlarm')}</strong> <span class={`sev sev-${a.severity}`}>{severityLabel(s, a.severity)}</span>{' '}
          <strong>{ruleName(s, a.rule)}</strong> · <span data-testid="announcement-ward">{alarmWard(s, a)}</span>
          {a.scope === 'device' && (
            <>
              {' '}
              · <span data-testid="announcement-device">{s.devices.get(a.subject)?.name ?? a.subject}</span>
            </>
          )}{' '}
          · {alarmValue(s, a)} · {s.fmt.time(a.raisedAt)} ({stateLabel(s, a.state)}){' '}
          <AppLink href={`/alarms/${a.id}`} testid="announcement-link" class="announcement-link">
            {s.t('viewAlarm')}
          </AppLink>
          {props.dismissable !== false && (
            <button type="button" class="link" onClick={() => s.dismissAnnouncement(a.id)}>
              {s.t('dismiss')}
            </button>
          )}
        </div>
      ))}
    </div>
  );
}
