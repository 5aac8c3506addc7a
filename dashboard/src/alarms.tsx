/**
 * The alarm panel (active first, then by severity, then newest) and the announcement of new alarms, shown on
 * every open screen: the server sends each `alarm` event to every socket. Acknowledge and clear need the
 * operator role: a viewer sees the buttons disabled (and the API would answer 403 anyway).
 */
import { useState } from 'preact/hooks';
import { api, ApiError } from './api.ts';
import { navigate, useStore } from './hooks.ts';
import type { Key } from './i18n.ts';
import { ruleName, type Store } from './store.ts';
import type { AlarmRecord, AlarmSeverity } from './types.ts';

const SEVERITY_ORDER: AlarmSeverity[] = ['critical', 'major', 'minor', 'warning'];
const STATE_ORDER = ['active', 'acknowledged', 'cleared'];
const cap = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

export function sortAlarms(list: Iterable<AlarmRecord>): AlarmRecord[] {
  return [...list].sort(
    (a, b) =>
      STATE_ORDER.indexOf(a.state) - STATE_ORDER.indexOf(b.state) ||
      SEVERITY_ORDER.indexOf(a.severity) - SEVERITY_ORDER.indexOf(b.severity) ||
      b.raisedAt.localeCompare(a.raisedAt),
  );
}

export function AlarmPanel(props: { limit?: number; interactive?: boolean; openOnly?: boolean }) {
  const s = useStore();
  const [error, setError] = useState<string>();
  let list = sortAlarms(s.alarms.values());
  if (props.openOnly) list = list.filter((a) => a.state !== 'cleared');
  const shown = props.limit ? list.slice(0, props.limit) : list;
  const open = list.filter((a) => a.state !== 'cleared').length;
  const act = async (a: AlarmRecord, what: 'acknowledge' | 'clear') => {
    setError(undefined);
    try {
      const body = what === 'clear' ? { note: s.t('clearNoteDefault') } : {};
      const updated = await api<AlarmRecord>(`/api/v1/alarms/${a.id}/${what}`, { method: 'POST', body });
      s.alarms.set(updated.id, updated);
      s.changed();
    } catch (err) {
      setError(s.t('actionFailed', { detail: err instanceof ApiError ? err.code : String(err) }));
    }
  };
  const canAct = s.can('operator');
  return (
    <section class="panel alarms" data-testid="alarm-panel">
      <h2>
        {s.t('activeAlarms')}{' '}
        <span class="badge" data-testid="alarm-open-count">
          {s.fmt.num(open, 0)}
        </span>
      </h2>
      {error && (
        <p class="error" data-testid="alarm-error">
          {error}
        </p>
      )}
      {shown.length === 0 && <p class="muted">{s.t('noAlarms')}</p>}
      <ul class="alarm-list">
        {shown.map((a) => (
          <li key={a.id} class={`alarm sev-${a.severity} st-${a.state}`} data-testid="alarm-row" data-alarm-id={a.id} data-state={a.state}>
            <div class="alarm-head">
              <span class={`sev sev-${a.severity}`}>{s.t(`severity${cap(a.severity)}` as Key)}</span>
              <strong>{ruleName(s, a.rule)}</strong>
              <span class="alarm-state" data-testid="alarm-state">
                {s.t(`alarmState${cap(a.state)}` as Key)}
              </span>
            </div>
            <div class="alarm-body">
              {a.scope === 'device' ? (
                <a
                  href={`/devices/${a.subject}`}
                  onClick={(e) => {
                    e.preventDefault();
                    navigate(`/devices/${a.subject}`);
                  }}
                >
                  {a.subject}
                </a>
              ) : (
                <span>{zoneName(s, a.subject)}</span>
              )}{' '}
              · {s.fmt.dateTime(a.raisedAt)}
              {a.acknowledgedBy && <span class="muted"> · {s.t('acknowledgedBy', { who: a.acknowledgedBy })}</span>}
            </div>
            {props.interactive !== false && a.state !== 'cleared' && (
              <div class="alarm-actions">
                {a.state === 'active' && (
                  <button
                    type="button"
                    data-testid="alarm-ack"
                    disabled={!canAct}
                    title={canAct ? undefined : s.t('viewerCannotAct')}
                    onClick={() => void act(a, 'acknowledge')}
                  >
                    {s.t('acknowledge')}
                  </button>
                )}
                <button
                  type="button"
                  data-testid="alarm-clear"
                  disabled={!canAct}
                  title={canAct ? undefined : s.t('viewerCannotAct')}
                  onClick={() => void act(a, 'clear')}
                >
                  {s.t('clear')}
                </button>
              </div>
            )}
          </li>
        ))}
      </ul>
    </section>
  );
}

export function zoneName(s: Store, id: string): string {
  return s.city?.zones.find((z) => z.id === id)?.name[s.lang] ?? id;
}

/** New alarms, announced on every screen until dismissed. */
export function Announcements(props: { dismissable?: boolean }) {
  const s = useStore();
  if (!s.announcements.length) return null;
  return (
    <div class="announcements" role="alert" aria-live="assertive">
      {s.announcements.map((a) => (
        <div key={a.id} class={`announcement sev-${a.severity}`} data-testid="alarm-announcement" data-alarm-id={a.id} data-state={a.state}>
          <strong>{s.t('newAlarm')}:</strong> {ruleName(s, a.rule)} – {a.scope === 'device' ? a.subject : zoneName(s, a.subject)} (
          {s.t(`alarmState${cap(a.state)}` as Key)})
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
