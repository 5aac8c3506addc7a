/**
 * Street-light commands from the dashboard: a device or a whole zone, switched on or off or dimmed. Each
 * command's state (pending → delivered → acknowledged, or failed / expired) follows live from `command` events.
 */
import { useState } from 'preact/hooks';
import { api, ApiError } from './api.ts';
import { useStore } from './hooks.ts';
import type { Key } from './i18n.ts';
import type { CommandRecord } from './types.ts';

const cap = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

export function CommandControls(props: { target: { devices: string[] } | { zone: string }; testid?: string }) {
  const s = useStore();
  const [level, setLevel] = useState(50);
  const [batch, setBatch] = useState<string>();
  const [message, setMessage] = useState<string>();
  const canAct = s.can('operator');
  const send = async (action: Record<string, unknown>) => {
    setMessage(undefined);
    try {
      const out = await api<{ batch: string; commands: CommandRecord[] }>('/api/v1/commands', {
        method: 'POST',
        body: { target: props.target, action },
      });
      for (const c of out.commands) if (!s.commands.has(c.id)) s.commands.set(c.id, c);
      setBatch(out.batch);
      setMessage(s.t('commandSent', { n: out.commands.length }));
      s.changed();
    } catch (err) {
      setMessage(s.t('actionFailed', { detail: err instanceof ApiError ? `${err.code}: ${err.message}` : String(err) }));
    }
  };
  const title = canAct ? undefined : s.t('viewerCannotAct');
  const inTarget = (c: CommandRecord) =>
    'devices' in props.target
      ? props.target.devices.includes(c.device)
      : c.batch === batch || (batch === undefined && c.zone === props.target.zone);
  const recent = [...s.commands.values()]
    .filter(inTarget)
    .sort((a, b) => b.createdAt.localeCompare(a.createdAt))
    .slice(0, 8);
  return (
    <div class="commands" data-testid={props.testid ?? 'commands'}>
      <div class="command-buttons">
        <button type="button" data-testid="cmd-on" disabled={!canAct} title={title} onClick={() => void send({ powerState: 'on' })}>
          {s.t('switchOn')}
        </button>
        <button type="button" data-testid="cmd-off" disabled={!canAct} title={title} onClick={() => void send({ powerState: 'off' })}>
          {s.t('switchOff')}
        </button>
        <input
          type="range"
          min={10}
          max={90}
          step={10}
          value={level}
          data-testid="dim-level"
          disabled={!canAct}
          aria-label={s.t('dimTo', { level: s.fmt.percent(level / 100) })}
          onInput={(e) => setLevel(Number((e.target as HTMLInputElement).value))}
        />
        <button
          type="button"
          data-testid="cmd-dim"
          disabled={!canAct}
          title={title}
          onClick={() => void send({ powerState: 'on', illuminanceLevel: level / 100 })}
        >
          {s.t('dimTo', { level: s.fmt.percent(level / 100) })}
        </button>
      </div>
      {message && (
        <p class="muted" data-testid="command-message">
          {message}
        </p>
      )}
      <ul class="command-list">
        {recent.map((c) => (
          <li key={c.id} data-testid="command-row" data-command-id={c.id} data-state={c.state}>
            <span class={`cmd-state cs-${c.state}`}>{s.t(`commandState${cap(c.state)}` as Key)}</span> {c.device} ·{' '}
            {describeAction(c.action, s.t, s.fmt.percent)} · {s.fmt.time(c.createdAt)}
            {c.reason ? ` · ${c.reason}` : ''}
          </li>
        ))}
      </ul>
    </div>
  );
}

function describeAction(
  a: Record<string, unknown>,
  t: (k: Key, v?: Record<string, string | number>) => string,
  pct: (n: number) => string,
): string {
  if (typeof a.illuminanceLevel === 'number') return t('dimTo', { level: pct(a.illuminanceLevel) });
  if (a.powerState === 'off') return t('switchOff');
  return t('switchOn');
}
