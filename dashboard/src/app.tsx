/**
 * The shell: login, header (navigation with the open-alarm count, connection state, sound, language and
 * AQI-scale switches, who is signed in), the announcement of new alarms, and the pages: overview, map, alarm
 * console, command history, a device; any other path is the app's own "page not found". `/wall` is the
 * wall-screen mode: the overview and the map at full screen with no controls, reconnecting by itself and saying
 * so while cut off.
 */
import type { JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { AlarmConsole } from './alarm-console.tsx';
import { AlarmPanel, Announcements, AppLink } from './alarms.tsx';
import { CommandHistory } from './command-history.tsx';
import { DevicePage } from './device-page.tsx';
// devices page
import { DevicesPage } from './devices.tsx';
// operators and audit
import { AuditPage, OperatorsPage } from './admin.tsx';
import { navigate, useStore } from './hooks.ts';
import type { Key } from './i18n.ts';
import { CityMap, MapLegend, MapPage } from './map-view.tsx';
import { AirTables, EventFeed, FamilyCards, WardRanking } from './overview.tsx';
import { ReportsPage } from './reports.tsx';
import { blocked as soundBlocked } from './sound.ts';
import type { Store } from './store.ts';

const ROLE_KEYS: Record<string, Key> = { viewer: 'roleViewer', operator: 'roleOperator', admin: 'roleAdmin' };
const CONN_KEYS: Record<string, Key> = {
  connecting: 'connecting',
  connected: 'connected',
  disconnected: 'disconnected',
  offline: 'serverOffline',
};

/** The page a path shows; undefined for a path the app does not have. */
function route(path: string): (() => JSX.Element) | undefined {
  if (path === '/' || path === '') return () => <Overview />;
  if (path === '/map') return () => <MapPage />;
  if (path === '/alarms') return () => <AlarmConsole />;
  if (path === '/commands') return () => <CommandHistory />;
  if (path === '/reports') return () => <ReportsPage />;
  const alarm = /^\/alarms\/(\d+)$/.exec(path);
  if (alarm) return () => <AlarmConsole id={Number(alarm[1])} />;
  // devices page
  if (path === '/devices') return () => <DevicesPage />;
  // operators and audit
  if (path === '/operators') return () => <OperatorsPage />;
  if (path === '/audit') return () => <AuditPage />;
  const device = /^\/devices\/([^/]+)$/.exec(path);
  if (device) return () => <DevicePage id={decodeURIComponent(device[1] as string)} />;
  return undefined;
}

export function App() {
  const s = useStore();
  const path = location.pathname.length > 1 ? location.pathname.replace(/\/$/, '') : location.pathname;
  const wall = path === '/wall';
  const page = route(path);
  useEffect(() => {
    document.title = s.t(wall ? 'wallTitle' : page ? 'appName' : 'notFoundTitle');
  });
  if (!wall && !page) return <NotFound path={location.pathname} />;
  if (!s.session) return <Login />;
  if (wall) return <Wall />;
  return (
    <div class="app">
      <Header />
      <Announcements />
      <main>{s.ready && page ? page() : <p class="muted">{s.t('loading')}</p>}</main>
    </div>
  );
}

/** Any path the app does not have: said in words, with the way back (and an HTTP 404 from the server). */
function NotFound(props: { path: string }) {
  const s = useStore();
  return (
    <div class="login-page">
      <section class="panel not-found" data-testid="not-found">
        <h1>{s.t('notFoundTitle')}</h1>
        <p>{s.t('notFoundText', { path: props.path })}</p>
        <p>
          <AppLink href="/" testid="not-found-home">
            {s.t('goOverview')}
          </AppLink>
        </p>
        <button type="button" class="link" data-testid="lang-switch" onClick={() => s.setLang(s.lang === 'vi' ? 'en' : 'vi')}>
          {s.t('switchToOther')}
        </button>
      </section>
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
      class={location.pathname === href || (href !== '/' && location.pathname.startsWith(`${href}/`)) ? 'active' : ''}
      onClick={(e) => {
        e.preventDefault();
        navigate(href);
      }}
    >
      {s.t(key)}
    </a>
  );
  const { open } = s.openCounts();
  return (
    <header class="top">
      <strong class="brand" data-testid="app-title">
        {s.t('appName')}
      </strong>
      <nav>
        {link('/', 'navOverview', 'nav-overview')}
        {link('/map', 'navMap', 'nav-map')}
        {link('/alarms', 'navAlarms', 'nav-alarms')}
        {open > 0 && (
          <span class="badge alarm-badge" data-testid="alarm-badge" data-count={open} title={s.t('openBadgeTitle', { n: open })}>
            {s.fmt.num(open, 0)}
          </span>
        )}
        {link('/commands', 'navCommands', 'nav-commands')}
        {link('/reports', 'navReports', 'nav-reports')}
        {/* devices page */}
        {link('/devices', 'navDevices', 'nav-devices')}
        {/* operators and audit */}
        {s.can('admin') && link('/operators', 'navOperators', 'nav-operators')}
        {s.can('admin') && link('/audit', 'navAudit', 'nav-audit')}
        <a href="/wall" data-testid="nav-wall">
          {s.t('navWall')}
        </a>
      </nav>
      <div class="tools">
        <ConnState s={s} />
        <button
          type="button"
          data-testid="sound-switch"
          data-sound={s.sound ? 'on' : 'off'}
          aria-pressed={s.sound}
          onClick={() => s.setSound(!s.sound)}
        >
          {s.t(s.sound ? 'soundOn' : 'soundOff')}
        </button>
        {s.sound && s.signals > 0 && soundBlocked() && (
          <span class="sound-blocked" data-testid="sound-blocked">
            {s.t('soundBlocked')}
          </span>
        )}
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
  const s = useStore();
  return (
    <div class="overview" data-testid="overview">
      <h1 class="visually-hidden">{s.t('navOverview')}</h1>
      <div class="overview-main">
        {/* Overview: what is wrong first (wards ranked), then the city's figures and the air. */}
        <WardRanking />
        <FamilyCards />
        <AirTables />
      </div>
      <div class="overview-side">
        <AlarmPanel limit={8} />
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
        <h1 class="wall-title">{s.t('wallTitle')}</h1>
        <span class="wall-city">{s.city?.name[s.lang]}</span>
        <span class="wall-clock" data-testid="wall-clock">
          {s.fmt.dateTime(now)}
        </span>
        <ConnState s={s} />
      </header>
      {s.sound && s.signals > 0 && soundBlocked() && (
        <div class="wall-sound" data-testid="sound-blocked">
          {s.t('soundBlocked')}
        </div>
      )}
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
            <AirTables compact stationsOnly />
          </div>
          {/* Wall: the map carries its legend; the right column ranks the wards before the alarms and the feed. */}
          <div class="wall-map-wrap">
            <CityMap interactive={false} testid="wall-map" />
            <MapLegend class="wall-legend" />
          </div>
          <div class="wall-right">
            <WardRanking compact />
            <AlarmPanel limit={6} interactive={false} />
            <EventFeed max={12} />
          </div>
        </div>
      )}
    </div>
  );
}
