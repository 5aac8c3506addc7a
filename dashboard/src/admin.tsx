/**
 * Administration, for admins only (the API answers 403 to anyone else): operator accounts (/operators: list,
 * create, disable, set a new password, each through a dialog) and the audit log (/audit: who did what, when,
 * from where and how it ended, filtered by the server by actor and action).
 */
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, apiWithTotal } from './api.ts';
import { Dialog } from './dialog.tsx';
import { useStore } from './hooks.ts';
import type { Key } from './i18n.ts';
import type { Store } from './store.ts';
import { cityDay } from './time-range.ts';

type Role = 'viewer' | 'operator' | 'admin';
const ROLES: Role[] = ['viewer', 'operator', 'admin'];
const ROLE_KEYS: Record<Role, Key> = { viewer: 'roleViewer', operator: 'roleOperator', admin: 'roleAdmin' };

interface Operator {
  username: string;
  role: Role;
  disabled: boolean;
  createdAt: string;
  lastLoginAt?: string;
}

interface AuditEntry {
  at: string;
  actor: string;
  role: Role | null;
  action: string;
  target: string | null;
  address: string | null;
  outcome: string;
  count: number;
  lastAt?: string;
}

const failed = (s: Store, err: unknown) =>
  s.t('actionFailed', { detail: err instanceof ApiError ? `${err.code}: ${err.message}` : String(err) });

function AdminOnly() {
  const s = useStore();
  return (
    <p class="error" data-testid="admin-only">
      {s.t('adminOnly')}
    </p>
  );
}

export function OperatorsPage() {
  const s = useStore();
  const [list, setList] = useState<Operator[]>();
  const [error, setError] = useState<string>();
  const [asking, setAsking] = useState<{ what: 'create' } | { what: 'disable' | 'password'; op: Operator }>();
  const [seq, setSeq] = useState(0);
  useEffect(() => {
    if (!s.can('admin')) return;
    api<Operator[]>('/api/v1/operators').then(setList, (err) => setError(failed(s, err)));
  }, [seq]);
  if (!s.can('admin')) return <AdminOnly />;
  const done = () => {
    setAsking(undefined);
    setSeq(seq + 1);
  };
  return (
    <section class="panel" data-testid="operators-page">
      <h1>{s.t('operatorsTitle')}</h1>
      <div class="filters">
        <button type="button" data-testid="operator-create" onClick={() => setAsking({ what: 'create' })}>
          {s.t('operatorCreate')}
        </button>
      </div>
      {error && <p class="error">{error}</p>}
      <div class="table-wrap">
        <table data-testid="operators-table">
          <thead>
            <tr>
              <th>{s.t('username')}</th>
              <th>{s.t('role')}</th>
              <th>{s.t('state')}</th>
              <th>{s.t('operatorCreated')}</th>
              <th>{s.t('operatorLastLogin')}</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {list?.map((op) => (
              <tr key={op.username} data-testid="operator-row" data-username={op.username} data-disabled={String(op.disabled)}>
                <td>{op.username}</td>
                <td>{s.t(ROLE_KEYS[op.role])}</td>
                <td data-testid="operator-state">{s.t(op.disabled ? 'operatorDisabled' : 'operatorActive')}</td>
                <td>{s.fmt.dateTime(op.createdAt)}</td>
                <td>{s.fmt.dateTime(op.lastLoginAt)}</td>
                <td>
                  <button type="button" data-testid="operator-password" onClick={() => setAsking({ what: 'password', op })}>
                    {s.t('operatorResetPassword')}
                  </button>{' '}
                  {!op.disabled && op.username !== s.session?.username && (
                    <button type="button" data-testid="operator-disable" onClick={() => setAsking({ what: 'disable', op })}>
                      {s.t('operatorDisable')}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {asking?.what === 'create' && <CreateDialog onDone={done} onCancel={() => setAsking(undefined)} />}
      {asking && asking.what !== 'create' && (
        <AccountDialog what={asking.what} op={asking.op} onDone={done} onCancel={() => setAsking(undefined)} />
      )}
    </section>
  );
}

function CreateDialog(props: { onDone: () => void; onCancel: () => void }) {
  const s = useStore();
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [role, setRole] = useState<Role>('viewer');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const submit = async () => {
    setBusy(true);
    try {
      await api('/api/v1/operators', { method: 'POST', body: { username: username.trim(), password, role } });
      props.onDone();
    } catch (err) {
      setError(failed(s, err));
      setBusy(false);
    }
  };
  return (
    <Dialog
      title={s.t('operatorCreate')}
      testid="operator-dialog"
      confirmLabel={s.t('operatorCreate')}
      confirmDisabled={busy || !username.trim() || !password}
      onConfirm={() => void submit()}
      onCancel={props.onCancel}
    >
      <label class="field">
        {s.t('username')}
        <input data-testid="operator-username" value={username} onInput={(e) => setUsername((e.target as HTMLInputElement).value)} />
      </label>
      <label class="field">
        {s.t('password')}
        <input
          data-testid="operator-new-password"
          type="password"
          autocomplete="new-password"
          value={password}
          onInput={(e) => setPassword((e.target as HTMLInputElement).value)}
        />
      </label>
      <label class="field">
        {s.t('role')}
        <select data-testid="operator-role" value={role} onChange={(e) => setRole((e.target as HTMLSelectElement).value as Role)}>
          {ROLES.map((r) => (
            <option key={r} value={r}>
              {s.t(ROLE_KEYS[r])}
            </option>
          ))}
        </select>
      </label>
      <p class="muted">{s.t('operatorPasswordHint')}</p>
      {error && (
        <p class="error" data-testid="operator-error">
          {error}
        </p>
      )}
    </Dialog>
  );
}

function AccountDialog(props: { what: 'disable' | 'password'; op: Operator; onDone: () => void; onCancel: () => void }) {
  const s = useStore();
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const disabling = props.what === 'disable';
  const path = `/api/v1/operators/${encodeURIComponent(props.op.username)}/${props.what}`;
  const submit = async () => {
    setBusy(true);
    try {
      await api(path, { method: 'POST', body: disabling ? {} : { password } });
      props.onDone();
    } catch (err) {
      setError(failed(s, err));
      setBusy(false);
    }
  };
  return (
    <Dialog
      title={s.t(disabling ? 'operatorDisableTitle' : 'operatorResetPassword', { user: props.op.username })}
      testid="operator-dialog"
      confirmLabel={s.t(disabling ? 'operatorDisable' : 'operatorResetPassword')}
      confirmDisabled={busy || (!disabling && !password)}
      onConfirm={() => void submit()}
      onCancel={props.onCancel}
    >
      {disabling ? (
        <p>{s.t('operatorDisableText', { user: props.op.username })}</p>
      ) : (
        <>
          <p>{s.t('operatorPasswordText', { user: props.op.username })}</p>
          <label class="field">
            {s.t('password')}
            <input
              data-testid="operator-new-password"
              type="password"
              autocomplete="new-password"
              value={password}
              onInput={(e) => setPassword((e.target as HTMLInputElement).value)}
            />
          </label>
          <p class="muted">{s.t('operatorPasswordHint')}</p>
        </>
      )}
      {error && (
        <p class="error" data-testid="operator-error">
          {error}
        </p>
      )}
    </Dialog>
  );
}

/** Audit records a page. */
const AUDIT_PAGE = 50;

export function AuditPage() {
  const s = useStore();
  const [f, setF] = useState({ actor: '', action: '', from: '', until: '', offset: 0 });
  const [page, setPage] = useState<{ list: AuditEntry[]; total: number; query: string }>();
  const [error, setError] = useState<string>();
  const tz = s.city?.timezone ?? 'Asia/Ho_Chi_Minh';
  // A filter changed starts at the first page again.
  const filter = (patch: Partial<typeof f>) => setF({ ...f, ...patch, offset: 0 });
  const q = new URLSearchParams({ limit: String(AUDIT_PAGE), offset: String(f.offset) });
  if (f.actor.trim()) q.set('actor', f.actor.trim());
  if (f.action.trim()) q.set('action', f.action.trim());
  // Days of the city, both included.
  const since = cityDay(f.from, tz);
  const until = cityDay(f.until, tz, true);
  if (since) q.set('since', since);
  if (until) q.set('until', until);
  const query = q.toString();
  useEffect(() => {
    if (!s.can('admin')) return;
    const timer = setTimeout(() => {
      apiWithTotal<AuditEntry[]>(`/api/v1/audit?${query}`).then(
        (out) => {
          setPage({ list: out.body, total: out.total, query });
          setError(undefined);
        },
        (err) => setError(failed(s, err)),
      );
    }, 200);
    return () => clearTimeout(timer);
  }, [query]);
  const total = page?.total ?? 0;
  if (!s.can('admin')) return <AdminOnly />;
  return (
    <section class="panel" data-testid="audit-page">
      <h1>{s.t('auditTitle')}</h1>
      <div class="filters">
        <label class="filter">
          {s.t('auditActor')}
          <input data-testid="audit-actor" value={f.actor} onInput={(e) => filter({ actor: (e.target as HTMLInputElement).value })} />
        </label>
        <label class="filter">
          {s.t('auditAction')}
          <input
            data-testid="audit-action"
            list="audit-actions"
            value={f.action}
            onInput={(e) => filter({ action: (e.target as HTMLInputElement).value })}
          />
          <datalist id="audit-actions">
            {[
              'login',
              'logout',
              'device.provision',
              'device.revoke',
              'device.rotate-token',
              'operator.create',
              'operator.disable',
              'operator.password',
            ].map((a) => (
              <option key={a} value={a} />
            ))}
          </datalist>
        </label>
        <label class="filter">
          {s.t('auditFrom')}
          <input
            type="date"
            data-testid="audit-from"
            value={f.from}
            onInput={(e) => filter({ from: (e.target as HTMLInputElement).value })}
          />
        </label>
        <label class="filter">
          {s.t('auditUntil')}
          <input
            type="date"
            data-testid="audit-until"
            value={f.until}
            onInput={(e) => filter({ until: (e.target as HTMLInputElement).value })}
          />
        </label>
      </div>
      {error && <p class="error">{error}</p>}
      <div class="table-wrap">
        <table data-testid="audit-table" data-query={page?.query === query ? query : ''}>
          <thead>
            <tr>
              <th>{s.t('colTime')}</th>
              <th>{s.t('auditActor')}</th>
              <th>{s.t('auditAction')}</th>
              <th>{s.t('auditTarget')}</th>
              <th>{s.t('auditOutcome')}</th>
              <th>{s.t('auditAddress')}</th>
            </tr>
          </thead>
          <tbody>
            {page?.list.map((e, i) => (
              <tr key={`${e.at}|${i}`} data-testid="audit-row" data-action={e.action} data-target={e.target ?? ''} data-outcome={e.outcome}>
                <td>{s.fmt.dateTime(e.at)}</td>
                <td>
                  {e.actor}
                  {e.role ? ` · ${s.t(ROLE_KEYS[e.role])}` : ''}
                </td>
                <td>{e.action}</td>
                <td>{e.target ?? '–'}</td>
                <td class={e.outcome === 'ok' ? '' : 'error'}>
                  {e.outcome === 'ok' ? s.t('auditOk') : e.outcome}
                  {e.count > 1 ? ` ×${s.fmt.num(e.count, 0)}` : ''}
                </td>
                <td>{e.address ?? '–'}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {page && page.list.length === 0 && <p class="muted">{s.t('auditNone')}</p>}
      </div>
      <div class="pager">
        <button
          type="button"
          data-testid="audit-prev"
          disabled={f.offset === 0}
          onClick={() => setF({ ...f, offset: Math.max(0, f.offset - AUDIT_PAGE) })}
        >
          {s.t('prevPage')}
        </button>
        <span class="muted" data-testid="audit-range" data-total={page ? total : undefined}>
          {total > 0 &&
            s.t('devicesRange', {
              a: s.fmt.num(f.offset + 1, 0),
              b: s.fmt.num(Math.min(total, f.offset + AUDIT_PAGE), 0),
              n: s.fmt.num(total, 0),
            })}
        </span>
        <button
          type="button"
          data-testid="audit-next"
          disabled={f.offset + AUDIT_PAGE >= total}
          onClick={() => setF({ ...f, offset: f.offset + AUDIT_PAGE })}
        >
          {s.t('nextPage')}
        </button>
      </div>
    </section>
  );
}
