/**
 * The shell: login, header (navigation, connection state, language and AQI-scale switches, who is signed in),
 * the announcement of new alarms, and the pages. `/wall` is the wall-screen mode: the overview and the map at
 * full screen with no controls, reconnecting by itself and saying so while cut off.
 */
import { useEffect, useState } from 'preact/hooks';
import { AlarmPanel, Announcements } from './alarms.tsx';
import { DevicePage } from './device-page.tsx';
import { navigate, useStore } from './hooks.ts';
import type { Key } from './i18n.ts';
import { CityMap, MapPage } from './map-view.tsx';
import { AirTables, EventFeed, FamilyCards } from './overview.tsx';
import type { Store } from './store.ts';

const ROLE_KEYS: Record<string, Key> = { viewer: 'roleViewer', operator: 'roleOperator', admin: 'roleAdmin' };
const CONN_KEYS: Record<string, Key> = {
  connecting: 'connecting',
  connected: 'connected',
  disconnected: 'disconnected',
  offline: 'serverOffline',
};

export function App() {
  const s = useStore();
  const path = location.pathname;
  const wall = path === '/wall' || path === '/wall/';
  useEffect(() => {
    document.title = s.t(wall ? 'wallTitle' : 'appName');
  });
  if (!s.session) return <Login />;
  if (wall) return <Wall />;
  let page = <Overview />;
  const m = /^\/devices\/([^/]+)$/.exec(path);
  if (m) page = <DevicePage id={decodeURIComponent(m[1] as string)} />;
  else if (path === '/map') page = <MapPage />;
  else if (path === '/alarms') page = <AlarmPanel />;
  return (
    <div class="app">
      <Header />
      <Announcements />
      <main>{s.ready ? page : <p class="muted">{s.t('loading')}</p>}</main>
    </div>
  );
}

function ConnState(props: { s: Store }) {
  const { s } = props;
  return (
    <span class={`conn conn-${s.conn}`} data-testid="conn-state" data-state={s.conn} role="status">
      {s.t(CONN_KEYS[s.conn] as Key)}
    </span>
  );
}

function Header() {
  const s = useStore();
  const link = (href: string, key: Key, testid: string) => (
    <a
      href={href}
      data-testid={testid}
      class={location.pathname === href ? 'active' : ''}
      onClick={(e) => {
        e.preventDefault();
        navigate(href);
      }}
    >
      {s.t(key)}
    </a>
  );
  const open = [...s.alarms.values()].filter((a) => a.state === 'active').length;
  return (
    <header class="top">
      <strong class="brand" data-testid="app-title">
        {s.t('appName')}
      </strong>
      <nav>
        {link('/', 'navOverview', 'nav-overview')}
        {link('/map', 'navMap', 'nav-map')}
        {link('/alarms', 'navAlarms', 'nav-alarms')}
        {open > 0 && <span class="badge alarm-badge">{s.fmt.num(open, 0)}</span>}
        <a href="/wall" data-testid="nav-wall">
          {s.t('navWall')}
        </a>
      </nav>
      <div class="tools">
        <ConnState s={s} />
        <label class="switch">
          <input
            type="checkbox"
            data-testid="scale-switch"
            checked={s.scale === 'epa'}
            onChange={() => s.setScale(s.scale === 'epa' ? 'vn' : 'epa')}
          />{' '}
          {s.t('aqiScaleSwitch')}
        </label>
        <button
          type="button"
          data-testid="lang-switch"
          lang={s.lang === 'vi' ? 'en' : 'vi'}
          onClick={() => s.setLang(s.lang === 'vi' ? 'en' : 'vi')}
        >
          {s.t('switchToOther')}
        </button>
        <span class="who" data-testid="who" data-role={s.session?.role}>
          {s.session?.username} · {s.t(ROLE_KEYS[s.session?.role ?? 'viewer'] as Key)}
        </span>
        <button type="button" data-testid="logout" onClick={() => void s.logout()}>
          {s.t('logout')}
        </button>
      </div>
    </header>
  );
}

function Overview() {
  return (
    <div class="overview" data-testid="overview">
      <div class="overview-main">
        <FamilyCards />
        <AirTables />
      </div>
      <div class="overview-side">
        <AlarmPanel limit={8} openOnly />
        <EventFeed />
      </div>
    </div>
  );
}

function Login() {
  const s = useStore();
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  return (
    <div class="login-page">
      <form
        class="panel login"
        data-testid="login-form"
        onSubmit={(e) => {
          e.preventDefault();
          setBusy(true);
          void s.login(username, password).finally(() => setBusy(false));
        }}
      >
        <h1>{s.t('appName')}</h1>
        <h2>{s.t('loginTitle')}</h2>
        <label>
          {s.t('username')}
          <input
            data-testid="login-username"
            autocomplete="username"
            value={username}
            onInput={(e) => setUsername((e.target as HTMLInputElement).value)}
          />
        </label>
        <label>
          {s.t('password')}
          <input
            data-testid="login-password"
            type="password"
            autocomplete="current-password"
            value={password}
            onInput={(e) => setPassword((e.target as HTMLInputElement).value)}
          />
        </label>
        {s.loginMessage && (
          <p class="error" data-testid="login-error">
            {s.t(s.loginMessage)}
          </p>
        )}
        <div class="login-actions">
          <button type="submit" data-testid="login-submit" disabled={busy}>
            {s.t('login')}
          </button>
          <button type="button" class="link" data-testid="lang-switch" onClick={() => s.setLang(s.lang === 'vi' ? 'en' : 'vi')}>
            {s.t('switchToOther')}
          </button>
        </div>
      </form>
    </div>
  );
}

/** 1920×1080, no controls: clock, connection state, family figures, air, map, open alarms, feed. */
function Wall() {
  const s = useStore();
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  return (
    <div class={`wall conn-${s.conn}`} data-testid="wall">
      <header class="wall-head">
        <strong>{s.t('wallTitle')}</strong>
        <span class="wall-city">{s.city?.name[s.lang]}</span>
        <span class="wall-clock" data-testid="wall-clock">
          {s.fmt.dateTime(now)}
        </span>
        <ConnState s={s} />
      </header>
      {s.conn !== 'connected' && (
        <div class="wall-banner" data-testid="wall-disconnected" role="alert">
          {s.t(CONN_KEYS[s.conn] as Key)}
        </div>
      )}
      <Announcements dismissable={false} />
      {s.ready && (
        <div class="wall-grid">
          <div class="wall-left">
            <FamilyCards />
            <AirTables compact />
          </div>
          <CityMap interactive={false} testid="wall-map" />
          <div class="wall-right">
            <AlarmPanel limit={10} interactive={false} openOnly />
            <EventFeed max={25} />
          </div>
        </div>
      )}
    </div>
  );
}
