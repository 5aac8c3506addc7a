/**
 * Street-light commands from the dashboard: a device, or every light of a ward, switched on or off or set to a
 * brightness. A command for more than one device asks first, naming the ward and how many lights it reaches.
 * The batch sent from this panel shows live how many of its commands reached their light, were carried out or
 * failed ("29 of 31 acknowledged"), from `command` events; another ward chosen starts a clean panel (the map
 * gives each ward its own, by key).
 */
import { useState } from 'preact/hooks';
import { api, ApiError } from './api.ts';
import { Dialog } from './dialog.tsx';
import { useStore } from './hooks.ts';
import type { Key } from './i18n.ts';
import { type Store, zoneName } from './store.ts';
import type { CommandRecord } from './types.ts';

const cap = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
const SHOWN = 12;

type Target = { devices: string[] } | { zone: string };

/** What an action does, in words: switch on, switch off, set brightness to 30 %. */
export function describeAction(s: Store, a: Record<string, unknown>): string {
  if (a.powerState === 'off') return s.t('actionOff');
  if (typeof a.illuminanceLevel === 'number') return s.t('dimTo', { level: s.fmt.percent(a.illuminanceLevel) });
  return s.t('actionOn');
}

/** The zone and the zones below it (a ward target reaches its sub-zones, as the server resolves it). */
function zoneAndBelow(s: Store, zone: string): Set<string> {
  const out = new Set([zone]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const z of s.city?.zones ?? []) {
      if (z.parent && out.has(z.parent) && !out.has(z.id)) {
        out.add(z.id);
        grew = true;
      }
    }
  }
  return out;
}

/** The street lights a target reaches, as this screen knows the devices. */
function lightsOf(s: Store, target: Target): string[] {
  if ('devices' in target) return target.devices;
  const zones = zoneAndBelow(s, target.zone);
  return [...s.devices.values()].filter((d) => d.family === 'streetLight' && zones.has(d.zone)).map((d) => d.id);
}

export function CommandControls(props: { target: Target; testid?: string }) {
  const s = useStore();
  const [level, setLevel] = useState(50);
  const [batch, setBatch] = useState<{ id: string; ids: string[]; action: Record<string, unknown> }>();
  const [asking, setAsking] = useState<Record<string, unknown>>();
  const [message, setMessage] = useState<string>();
  const canAct = s.can('operator');
  const lights = lightsOf(s, props.target);
  const many = 'zone' in props.target || props.target.devices.length > 1;
  const send = async (action: Record<string, unknown>) => {
    setAsking(undefined);
    setMessage(undefined);
    try {
      const out = await api<{ batch: string; commands: CommandRecord[] }>('/api/v1/commands', {
        method: 'POST',
        body: { target: props.target, action },
      });
      // The socket may have brought some already (with a newer state): keep those.
      for (const c of out.commands) if (!s.commands.has(c.id)) s.applyCommand(c);
      setBatch({ id: out.batch, ids: out.commands.map((c) => c.id), action });
      s.changed();
    } catch (err) {
      setMessage(s.t('actionFailed', { detail: err instanceof ApiError ? `${err.code}: ${err.message}` : String(err) }));
    }
  };
  const ask = (action: Record<string, unknown>) => (many ? setAsking(action) : void send(action));
  const title = canAct ? undefined : s.t('viewerCannotAct');
  const wardsOf = (ids: string[]) =>
    [...new Set(ids.map((id) => s.devices.get(id)?.zone).filter((z): z is string => !!z))].map((z) => zoneName(s, z)).join(', ');
  const levelText = s.fmt.percent(level / 100);
  return (
    <div class="commands" data-testid={props.testid ?? 'commands'}>
      <div class="command-buttons">
        <button type="button" data-testid="cmd-on" disabled={!canAct} title={title} onClick={() => ask({ powerState: 'on' })}>
          {s.t('switchOn')}
        </button>
        <button type="button" data-testid="cmd-off" disabled={!canAct} title={title} onClick={() => ask({ powerState: 'off' })}>
          {s.t('switchOff')}
        </button>
      </div>
      <div class="command-buttons">
        <label class="slider">
          {s.t('brightness')}{' '}
          <input
            type="range"
            min={10}
            max={90}
            step={10}
            value={level}
            data-testid="dim-level"
            disabled={!canAct}
            aria-valuetext={levelText}
            onInput={(e) => setLevel(Number((e.target as HTMLInputElement).value))}
          />{' '}
          <output data-testid="dim-level-value">{levelText}</output>
        </label>
        <button
          type="button"
          data-testid="cmd-dim"
          disabled={!canAct}
          title={title}
          onClick={() => ask({ powerState: 'on', illuminanceLevel: level / 100 })}
        >
          {s.t('dimTo', { level: levelText })}
        </button>
      </div>
      {asking && (
        <Dialog
          title={s.t('confirmTitle')}
          testid="command-confirm"
          confirmLabel={s.t('sendCommand')}
          confirmDisabled={lights.length === 0}
          onConfirm={() => void send(asking)}
          onCancel={() => setAsking(undefined)}
        >
          <p data-testid="command-confirm-text" data-count={lights.length}>
            {'zone' in props.target
              ? s.t('confirmZone', {
                  action: describeAction(s, asking),
                  n: s.fmt.num(lights.length, 0),
                  ward: zoneName(s, props.target.zone),
                })
              : s.t('confirmDevices', { action: describeAction(s, asking), n: s.fmt.num(lights.length, 0), wards: wardsOf(lights) })}
          </p>
        </Dialog>
      )}
      {message && (
        <p class="error" data-testid="command-message">
          {message}
        </p>
      )}
      {batch && <BatchProgress batch={batch} target={props.target} />}
      {!batch && 'devices' in props.target && <RecentCommands devices={props.target.devices} />}
    </div>
  );
}

/** A batch sent from this panel, live: how many reached their light, were carried out, failed; then its commands. */
function BatchProgress(props: { batch: { id: string; ids: string[]; action: Record<string, unknown> }; target: Target }) {
  const s = useStore();
  const { batch } = props;
  const list = batch.ids.map((id) => s.commands.get(id)).filter((c): c is CommandRecord => !!c);
  const n = batch.ids.length;
  const reached = list.filter((c) => c.deliveredAt || c.state === 'delivered' || c.state === 'acknowledged' || c.state === 'failed').length;
  const acknowledged = list.filter((c) => c.state === 'acknowledged').length;
  const failed = list.filter((c) => c.state === 'failed' || c.state === 'expired').length;
  const waiting = n - acknowledged - failed;
  const target = 'zone' in props.target ? zoneName(s, props.target.zone) : s.t('lightsCount', { n: s.fmt.num(n, 0) });
  // Failed ones first: they are what an operator must look at.
  const order = { failed: 0, expired: 0, pending: 1, delivered: 1, acknowledged: 2 };
  const rows = [...list].sort((a, b) => order[a.state] - order[b.state] || a.device.localeCompare(b.device));
  return (
    <div
      class="batch"
      data-testid="batch-summary"
      data-batch={batch.id}
      data-size={n}
      data-reached={reached}
      data-acknowledged={acknowledged}
      data-failed={failed}
    >
      <p>
        <strong>{s.t('batchTitle', { action: describeAction(s, batch.action), target })}</strong>
      </p>
      <p class="batch-counts">
        <span data-testid="batch-reached">{s.t('batchReached', { k: s.fmt.num(reached, 0), n: s.fmt.num(n, 0) })}</span> ·{' '}
        <span data-testid="batch-acknowledged" class="cs-acknowledged">
          {s.t('batchAcknowledged', { k: s.fmt.num(acknowledged, 0), n: s.fmt.num(n, 0) })}
        </span>{' '}
        ·{' '}
        <span data-testid="batch-failed" class={failed ? 'cs-failed' : ''}>
          {s.t('batchFailed', { k: s.fmt.num(failed, 0), n: s.fmt.num(n, 0) })}
        </span>
        {waiting > 0 && <span class="muted"> · {s.t('batchWaiting', { k: s.fmt.num(waiting, 0) })}</span>}
      </p>
      <progress max={n} value={acknowledged + failed} />
      <CommandRows list={rows.slice(0, SHOWN)} />
      {rows.length > SHOWN && <p class="muted">{s.t('batchMore', { n: s.fmt.num(rows.length - SHOWN, 0) })}</p>}
    </div>
  );
}

/** The latest commands of a device (its page), live. */
function RecentCommands(props: { devices: string[] }) {
  const s = useStore();
  const recent = [...s.commands.values()]
    .filter((c) => props.devices.includes(c.device))
    .sort((a, b) => b.createdAt.localeCompare(a.createdAt))
    .slice(0, 8);
  return <CommandRows list={recent} />;
}

function CommandRows(props: { list: CommandRecord[] }) {
  const s = useStore();
  return (
    <ul class="command-list">
      {props.list.map((c) => (
        <li key={c.id} data-testid="command-row" data-command-id={c.id} data-state={c.state}>
          <span class={`cmd-state cs-${c.state}`}>{s.t(`commandState${cap(c.state)}` as Key)}</span> {c.device} ·{' '}
          {describeAction(s, c.action)} · {s.fmt.time(c.createdAt)}
          {c.reason ? ` · ${c.reason}` : ''}
        </li>
      ))}
    </ul>
  );
}
