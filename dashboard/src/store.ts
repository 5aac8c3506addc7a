/**
 * The dashboard's state: one mutable store fed by REST at (re)connect and by socket.io events after that.
 * Views subscribe and re-render at most once per animation frame however many events arrive (a city sends
 * hundreds of readings a second); the map takes only the devices that changed (`takeDirty`).
 *
 * Connection: socket.io-client reconnects by itself (backoff up to 3 s). Every (re)connect re-subscribes,
 * applies the snapshot and refetches the lists, so a screen that was cut off catches up without a reload.
 */
import { io, type Socket } from 'socket.io-client';
import { api, apiWithTotal, ApiError, setToken } from './api.ts';
import { playAlarm, setSoundEnabled, signalled, soundEnabled } from './sound.ts';
import { type Formats, formatsFor, type Key, type Lang, translate } from './i18n.ts';
import type {
  AlarmRecord,
  AqiEvent,
  CityProfile,
  ClientToServer,
  CommandRecord,
  DeviceInfo,
  EnrichedReading,
  IndexValue,
  IndicatorEvent,
  Role,
  Scales,
  ServerToClient,
  RejectionEvent,
  Session,
  StatusEvent,
} from './types.ts';
import { unpackLiveBatch } from './types.ts';

export type ConnState = 'connecting' | 'connected' | 'disconnected' | 'offline';
export type Scale = 'vn' | 'epa';

export interface FeedItem {
  id: number;
  at: number;
  kind: 'online' | 'offline' | 'rejected' | 'alarm' | 'command';
  /** Translated when shown, so a language switch changes the feed too. */
  key: Key;
  vars: Record<string, string>;
  device?: string;
}

/** An effective alarm rule (GET /api/v1/alarms/rules), for names, units and durations. */
export interface RuleInfo {
  id: string;
  kind: string;
  source: string;
  family?: string;
  field?: string;
  severity: string;
  forMs: number;
  clearForMs: number;
  builtIn: boolean;
}

/** A batch of commands as this screen saw it being created and answered (the event feed follows it). */
interface SeenBatch {
  feedId: number;
  action: Record<string, unknown>;
  createdBy: string;
  ids: Set<string>;
  zones: Set<string>;
  devices: Set<string>;
  done: boolean;
}

/** GET /api/v1/commands/batches item, as far as the feed uses it. */
interface RecentBatch {
  createdAt: string;
  createdBy: string;
  action: Record<string, unknown>;
  zones: string[];
  size: number;
}

export interface AqiNow {
  id: string;
  zone: string;
  time: number;
  vn: IndexValue | null;
  epa: IndexValue | null;
}

const LS_SESSION = 'citypulse.session';
const LS_LANG = 'citypulse.lang';
const LS_SCALE = 'citypulse.scale';
const FEED_MAX = 200;
const COMMANDS_MAX = 5000;
/** Open alarms loaded at (re)connect; more than this are counted (X-Total-Count), not listed. */
const OPEN_ALARMS_LOADED = 1000;

function readJson<T>(storage: Storage, key: string): T | undefined {
  try {
    const s = storage.getItem(key);
    return s ? (JSON.parse(s) as T) : undefined;
  } catch {
    return undefined;
  }
}

class Store {
  session: Session | undefined = readJson<Session>(localStorage, LS_SESSION) ?? readJson<Session>(sessionStorage, LS_SESSION);
  lang: Lang = localStorage.getItem(LS_LANG) === 'en' ? 'en' : 'vi';
  scale: Scale = localStorage.getItem(LS_SCALE) === 'epa' ? 'epa' : 'vn';
  loginMessage: Key | undefined;
  conn: ConnState = 'connecting';
  ready = false;
  city: CityProfile | undefined;
  scales: Scales | undefined;
  devices = new Map<string, DeviceInfo>();
  latest = new Map<string, EnrichedReading>();
  stationAqi = new Map<string, AqiNow>();
  zoneAqi = new Map<string, AqiNow>();
  /** Device indicators (traffic congestionLevel, lamp on/dimmed/fault). */
  deviceIndicators = new Map<string, IndicatorEvent['values']>();
  cityIndicators: Partial<Record<'traffic' | 'streetLight', IndicatorEvent['values']>> = {};
  // --- Overview: per-ward indicators and the age of each figure ---------------------------------------------
  /** Ward indicators per family (lamps on/dimmed/faulty, congested junctions). */
  zoneIndicators = new Map<string, Partial<Record<'traffic' | 'streetLight', IndicatorEvent['values']>>>();
  /** When the city's figures of a family were last computed (epoch ms): figures show their age. */
  cityIndicatorTime: Partial<Record<'traffic' | 'streetLight', number>> = {};
  /** The feed was started from the server's recent events (alarms, command batches, offline devices). */
  feedLoaded = false;
  // -----------------------------------------------------------------------------------------------------------
  alarms = new Map<number, AlarmRecord>();
  /** Open alarms the server had beyond those loaded (a city with more than OPEN_ALARMS_LOADED open). */
  private openNotLoaded = 0;
  /** Bumped at every alarm event: views that read the alarm API refresh on it. */
  alarmSeq = 0;
  /** Bumped at every command event: the command history refreshes on it. */
  commandSeq = 0;
  rules: RuleInfo[] = [];
  commands = new Map<string, CommandRecord>();
  private seenBatches = new Map<string, SeenBatch>();
  feed: FeedItem[] = [];
  /** New critical and major alarms announced on this screen and not dismissed yet. */
  announcements: AlarmRecord[] = [];
  /** The audible signal on this screen (remembered by the browser). */
  sound = soundEnabled();
  /** How many signals this screen played (a figure for the screen and its tests). */
  signals = 0;
  private feedSeq = 0;
  private listeners = new Set<() => void>();
  private frame = 0;
  private dirty = new Set<string>();
  private allDirty = true;
  private socket: Socket<ServerToClient, ClientToServer> | undefined;
  private readingListeners = new Set<(r: EnrichedReading) => void>();

  get fmt(): Formats {
    return formatsFor(this.lang, this.city?.timezone ?? 'Asia/Ho_Chi_Minh');
  }

  t = (key: Key, vars?: Record<string, string | number>): string => translate(this.lang, key, vars);

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Readings as they arrive (charts append them), not throttled. */
  onReading(fn: (r: EnrichedReading) => void): () => void {
    this.readingListeners.add(fn);
    return () => this.readingListeners.delete(fn);
  }

  /** Schedules one notification of every view for the next frame. */
  changed(device?: string): void {
    if (device) this.dirty.add(device);
    if (this.frame) return;
    const run = () => {
      this.frame = 0;
      for (const fn of this.listeners) fn();
    };
    // A hidden tab gets no animation frames: fall back to a timer so state never lags far behind.
    this.frame = document.hidden ? (setTimeout(run, 250) as unknown as number) : requestAnimationFrame(run);
  }

  /** Devices whose marker must be redrawn since the last call (all: `'all'`). */
  takeDirty(): Set<string> | 'all' {
    if (this.allDirty) {
      this.allDirty = false;
      this.dirty.clear();
      return 'all';
    }
    const d = this.dirty;
    this.dirty = new Set();
    return d;
  }

  /** The next takeDirty() returns 'all' (a new map draws every marker). */
  markAllDirty(): void {
    this.allDirty = true;
    this.changed();
  }

  setLang(lang: Lang): void {
    this.lang = lang;
    localStorage.setItem(LS_LANG, lang);
    document.documentElement.lang = lang;
    this.changed();
  }

  setScale(scale: Scale): void {
    this.scale = scale;
    localStorage.setItem(LS_SCALE, scale);
    this.allDirty = true;
    this.changed();
  }

  /**
   * Open alarms (active + acknowledged): the one count the header badge, the overview panel and the alarm
   * console all show.
   */
  openCounts(): { open: number; active: number; acknowledged: number } {
    let active = 0;
    let acknowledged = 0;
    for (const a of this.alarms.values()) {
      if (a.state === 'active') active++;
      else if (a.state === 'acknowledged') acknowledged++;
    }
    return { open: active + acknowledged + this.openNotLoaded, active, acknowledged };
  }

  private keepAlarm(a: AlarmRecord): void {
    // An alarm not known here that is acknowledged or cleared was one of the open ones not loaded: from now on
    // it is counted by its own state.
    if (!this.alarms.has(a.id) && a.state !== 'active' && this.openNotLoaded > 0) this.openNotLoaded--;
    this.alarms.set(a.id, a);
  }

  setSound(on: boolean): void {
    this.sound = on;
    setSoundEnabled(on);
    this.changed();
  }

  /** An alarm from the API (an operator's acknowledge or clear) before its socket event arrives. */
  applyAlarm(a: AlarmRecord): void {
    this.keepAlarm(a);
    this.announcements = this.announcements.map((x) => (x.id === a.id ? a : x));
    this.alarmSeq++;
    this.changed(a.scope === 'device' ? a.subject : undefined);
  }

  can(role: Role): boolean {
    const order: Role[] = ['viewer', 'operator', 'admin'];
    return !!this.session && order.indexOf(this.session.role) >= order.indexOf(role);
  }

  async login(username: string, password: string): Promise<void> {
    try {
      const out = await api<{ token: string; operator: { username: string; role: Role } }>('/api/v1/auth/login', {
        method: 'POST',
        body: { username, password },
      });
      this.loginMessage = undefined;
      this.useSession({ token: out.token, username: out.operator.username, role: out.operator.role }, true);
    } catch (err) {
      this.loginMessage =
        err instanceof ApiError && err.status === 429
          ? 'loginRateLimited'
          : err instanceof ApiError && err.status === 401
            ? 'loginFailed'
            : 'loginError';
      this.changed();
    }
  }

  /** A token handed over in the URL fragment (wall screens): checked with /auth/me, kept for this tab only. */
  async adoptToken(token: string): Promise<void> {
    setToken(token);
    try {
      const me = await api<{ username: string; role: Role }>('/api/v1/auth/me');
      this.useSession({ token, username: me.username, role: me.role }, false);
    } catch {
      this.loginMessage = 'sessionExpired';
      setToken(undefined);
      this.changed();
    }
  }

  private useSession(s: Session, remember: boolean): void {
    this.session = s;
    (remember ? localStorage : sessionStorage).setItem(LS_SESSION, JSON.stringify(s));
    this.start();
  }

  async logout(message?: Key): Promise<void> {
    const had = this.session;
    this.session = undefined;
    this.loginMessage = message;
    localStorage.removeItem(LS_SESSION);
    sessionStorage.removeItem(LS_SESSION);
    this.socket?.close();
    this.socket = undefined;
    this.ready = false;
    if (had && !message) await api('/api/v1/auth/logout', { method: 'POST' }).catch(() => undefined);
    setToken(undefined);
    this.changed();
  }

  /** Starts (or restarts) the live connection of the current session. */
  start(): void {
    const s = this.session;
    if (!s) return;
    setToken(s.token, () => void this.logout('sessionExpired'));
    this.socket?.close();
    this.conn = 'connecting';
    // Batched: readings and device indicators arrive as one `batch` event every 20 ms at most, not one frame
    // each (a city at thousands of readings/s would otherwise cost every screen thousands of frames a second).
    const socket: Socket<ServerToClient, ClientToServer> = io({
      auth: { token: s.token, batch: true },
      transports: ['websocket'],
      reconnectionDelay: 500,
      reconnectionDelayMax: 3000,
    });
    this.socket = socket;
    socket.on('connect', () => void this.resync(socket));
    socket.on('disconnect', () => {
      if (this.conn !== 'offline') this.conn = 'disconnected';
      this.changed();
    });
    socket.on('offline', () => {
      this.conn = 'offline';
      this.changed();
    });
    socket.on('connect_error', (err) => {
      const code = (err as Error & { data?: { code?: string } }).data?.code;
      if (code === 'CP_API_UNAUTHORIZED') return void this.logout('sessionExpired');
      if (this.conn === 'connected' || this.conn === 'connecting') this.conn = 'disconnected';
      this.changed();
    });
    socket.on('reading', (r) => this.applyReading(r));
    socket.on('batch', (frame) => {
      const b = unpackLiveBatch(frame);
      for (const st of b.statuses) this.applyStatus(st);
      for (const r of b.rejections) this.applyRejected(r);
      for (const r of b.readings) this.applyReading(r);
      for (const i of b.indicators) this.applyIndicator(i);
    });
    socket.on('status', (st) => this.applyStatus(st));
    socket.on('rejected', (r) => this.applyRejected(r));
    socket.on('aqi', (a) => this.applyAqi(a));
    socket.on('indicator', (i) => this.applyIndicator(i));
    socket.on('alarm', (a) => {
      const known = this.alarms.has(a.id);
      this.keepAlarm(a);
      if (!known && a.state === 'active') {
        if (signalled(a.severity)) {
          this.announcements = [a, ...this.announcements].slice(0, 5);
          if (playAlarm(a.severity)) this.signals++;
        }
        this.pushFeed('alarm', 'eventAlarm', { rule: a.rule, subject: a.subject }, a.scope === 'device' ? a.subject : undefined);
      } else {
        this.announcements = this.announcements.map((x) => (x.id === a.id ? a : x));
      }
      this.alarmSeq++;
      this.changed(a.scope === 'device' ? a.subject : undefined);
    });
    socket.on('command', (c) => this.applyCommand(c));
  }

  /** A command's state from the socket (or the answer of the API that created it). */
  applyCommand(c: CommandRecord): void {
    this.commands.set(c.id, c);
    if (this.commands.size > COMMANDS_MAX) this.commands.delete(this.commands.keys().next().value as string);
    this.commandSeq++;
    this.followBatch(c);
    this.changed();
  }

  /**
   * The event feed shows each batch of commands once when it is sent (who, what, where, how many) and once when
   * every command of it has finished (how many were carried out, how many failed).
   */
  private followBatch(c: CommandRecord): void {
    if (!c.batch) return;
    let b = this.seenBatches.get(c.batch);
    if (!b) {
      if (c.state !== 'pending') return; // a batch created before this screen opened
      const id = ++this.feedSeq;
      b = { feedId: id, action: c.action, createdBy: c.createdBy, ids: new Set(), zones: new Set(), devices: new Set(), done: false };
      this.seenBatches.set(c.batch, b);
      this.feed.unshift({ id, at: Date.now(), kind: 'command', key: 'eventCommandSent', vars: {} });
      if (this.feed.length > FEED_MAX) this.feed.length = FEED_MAX;
      if (this.seenBatches.size > 200) this.seenBatches.delete(this.seenBatches.keys().next().value as string);
    }
    b.ids.add(c.id);
    if (c.zone) b.zones.add(c.zone);
    b.devices.add(c.device);
    const vars = batchVars(b);
    const sent = this.feed.find((f) => f.id === b.feedId);
    if (sent) sent.vars = vars;
    if (b.done) return;
    const states = [...b.ids].map((id) => this.commands.get(id)?.state);
    if (states.some((st) => st === 'pending' || st === 'delivered' || st === undefined)) return;
    b.done = true;
    const ok = states.filter((st) => st === 'acknowledged').length;
    this.pushFeed('command', 'eventCommandDone', { ...vars, ok: String(ok), failed: String(states.length - ok) });
  }

  private async resync(socket: Socket<ServerToClient, ClientToServer>): Promise<void> {
    try {
      const [city, scales, devices, aqi, indicators, open, rules, commands] = await Promise.all([
        this.city ? Promise.resolve(this.city) : api<CityProfile>('/api/v1/city'),
        this.scales ? Promise.resolve(this.scales) : api<Scales>('/api/v1/aqi/scales').catch(() => undefined),
        // The compact list (about a tenth of /api/v1/devices on the wire): the map, the overview and the feed
        // need no more; a device's page and the devices page ask the server for the rest.
        api<MapDevices>('/api/v1/map/devices').then(unpackMapDevices),
        api<{ stations: CurrentAqi[]; zones: CurrentAqi[] }>('/api/v1/aqi').catch(() => ({ stations: [], zones: [] })),
        api<IndicatorEvent[]>('/api/v1/indicators').catch(() => []),
        apiWithTotal<AlarmRecord[]>(`/api/v1/alarms?state=open&limit=${OPEN_ALARMS_LOADED}`).catch(() => ({ body: [], total: 0 })),
        api<RuleInfo[]>('/api/v1/alarms/rules').catch(() => this.rules),
        api<CommandRecord[]>('/api/v1/commands?limit=200').catch(() => []),
      ]);
      this.city = city;
      this.scales = scales;
      this.rules = rules;
      this.devices = new Map(devices.map((d) => [d.id, d]));
      for (const c of [...aqi.stations, ...aqi.zones]) {
        const h = c.hour;
        if (!h) continue;
        const now: AqiNow = { id: c.id, zone: c.zone, time: Date.parse(h.time), vn: h.vn, epa: h.epa };
        (c.scope === 'station' ? this.stationAqi : this.zoneAqi).set(c.id, now);
      }
      for (const i of indicators) this.applyIndicator(i, false);
      this.alarms = new Map(open.body.map((a) => [a.id, a]));
      this.openNotLoaded = Math.max(0, open.total - open.body.length);
      this.alarmSeq++;
      for (const c of [...commands].reverse()) this.commands.set(c.id, c);
      if (!this.feedLoaded) await this.loadRecentEvents(devices);
      const ack = await socket.timeout(10_000).emitWithAck('subscribe', {});
      if (ack.ok && ack.snapshot) {
        for (const r of ack.snapshot.readings) this.latest.set(r.device, r);
        for (const st of ack.snapshot.statuses) {
          const d = this.devices.get(st.device);
          if (d) d.online = st.state === 'online';
        }
      }
      this.conn = 'connected';
      this.ready = true;
      this.allDirty = true;
      document.documentElement.lang = this.lang;
      this.changed();
    } catch (err) {
      // The socket reconnects by itself; a failed resync is retried at the next connect.
      if (!(err instanceof ApiError && err.status === 401)) console.warn('resync failed', err);
      socket.disconnect().connect();
    }
  }

  private applyRejected(r: RejectionEvent): void {
    this.pushFeed('rejected', 'eventRejected', { device: r.device, code: r.code }, r.device);
    this.changed();
  }

  private applyStatus(st: StatusEvent): void {
    const d = this.devices.get(st.device);
    if (d) d.online = st.state === 'online';
    this.pushFeed(
      st.state === 'online' ? 'online' : 'offline',
      st.state === 'online' ? 'eventOnline' : 'eventOffline',
      { device: st.device },
      st.device,
    );
    this.changed(st.device);
  }

  private applyReading(r: EnrichedReading): void {
    const prev = this.latest.get(r.device);
    if (!prev || prev.time <= r.time) this.latest.set(r.device, r);
    for (const fn of this.readingListeners) fn(r);
    this.changed(r.device);
  }

  private applyAqi(a: AqiEvent): void {
    if (a.period !== 'hour') return;
    const map = a.scope === 'station' ? this.stationAqi : this.zoneAqi;
    const prev = map.get(a.id);
    if (prev && prev.time > a.time) return;
    map.set(a.id, { id: a.id, zone: a.zone, time: a.time, vn: a.vn, epa: a.epa });
    this.changed(a.scope === 'station' ? a.id : undefined);
  }

  private applyIndicator(i: IndicatorEvent, notify = true): void {
    if (i.scope === 'device') this.deviceIndicators.set(i.id, i.values);
    else if (i.scope === 'city' && (i.family === 'traffic' || i.family === 'streetLight')) {
      this.cityIndicators[i.family] = i.values;
      this.cityIndicatorTime[i.family] = Math.max(this.cityIndicatorTime[i.family] ?? 0, i.time);
    } else if (i.scope === 'zone' && (i.family === 'traffic' || i.family === 'streetLight')) {
      const z = this.zoneIndicators.get(i.id) ?? {};
      z[i.family] = i.values;
      this.zoneIndicators.set(i.id, z);
    }
    if (notify) this.changed(i.scope === 'device' ? i.id : undefined);
  }

  /**
   * Starts the feed with what happened before the page opened: the latest alarms raised, the latest command
   * batches and the devices offline now, newest first, under whatever the socket already brought.
   */
  private async loadRecentEvents(devices: DeviceInfo[]): Promise<void> {
    const [alarms, batches] = await Promise.all([
      api<AlarmRecord[]>('/api/v1/alarms?limit=30').catch(() => []),
      api<RecentBatch[]>('/api/v1/commands/batches?limit=20').catch(() => []),
    ]);
    const past: FeedItem[] = [];
    for (const a of alarms)
      past.push({
        id: ++this.feedSeq,
        at: Date.parse(a.raisedAt),
        kind: 'alarm',
        key: 'eventAlarm',
        vars: { rule: a.rule, subject: a.subject },
        device: a.scope === 'device' ? a.subject : undefined,
      });
    for (const b of batches) {
      const n = String(b.size);
      const vars = { who: b.createdBy, action: JSON.stringify(b.action), zones: b.zones.join(','), n };
      past.push({ id: ++this.feedSeq, at: Date.parse(b.createdAt), kind: 'command', key: 'eventCommandSent', vars });
    }
    for (const d of devices)
      if (!d.online && d.lastSeenAt)
        past.push({
          id: ++this.feedSeq,
          at: Date.parse(d.lastSeenAt),
          kind: 'offline',
          key: 'eventOffline',
          vars: { device: d.id },
          device: d.id,
        });
    past.sort((x, y) => y.at - x.at);
    this.feed = [...this.feed, ...past].slice(0, FEED_MAX);
    this.feedLoaded = true;
  }

  private pushFeed(kind: FeedItem['kind'], key: Key, vars: Record<string, string>, device?: string): void {
    this.feed.unshift({ id: ++this.feedSeq, at: Date.now(), kind, key, vars, device });
    if (this.feed.length > FEED_MAX) this.feed.length = FEED_MAX;
  }

  dismissAnnouncement(id: number): void {
    this.announcements = this.announcements.filter((a) => a.id !== id);
    this.changed();
  }

  /** The colour of an index on the chosen scale, from GET /api/v1/aqi/scales. */
  aqiColour(v: IndexValue | null | undefined): string | undefined {
    if (!v) return undefined;
    return this.scales?.[this.scale].categories.find((c) => c.level === v.level)?.color;
  }

  aqiName(v: IndexValue | null | undefined): string {
    if (!v) return this.t('unknown');
    return this.scales?.[this.scale].categories.find((c) => c.level === v.level)?.name[this.lang] ?? v.category;
  }
}

/** GET /api/v1/map/devices: one array per device (id, family, zone, lat, lon, online, [name, lastSeen]). */
interface MapDevices {
  families: DeviceInfo['family'][];
  zones: string[];
  devices: [string, number, number, number, number, 0 | 1, (string | null)?, number?][];
}

function unpackMapDevices(m: MapDevices): DeviceInfo[] {
  return m.devices.map(([id, f, z, lat, lon, online, name, seen]) => {
    const d: DeviceInfo = {
      id,
      family: m.families[f] as DeviceInfo['family'],
      zone: m.zones[z] as string,
      location: { lat, lon },
      online: online === 1,
    };
    if (name) d.name = name;
    if (seen) d.lastSeenAt = new Date(seen).toISOString();
    return d;
  });
}

interface CurrentAqi {
  scope: 'station' | 'zone';
  id: string;
  zone: string;
  hour: { time: string; vn: IndexValue | null; epa: IndexValue | null } | null;
}

/** The feed's words of a batch: who, what, where, how many. */
function batchVars(b: SeenBatch): Record<string, string> {
  return {
    who: b.createdBy,
    action: JSON.stringify(b.action),
    zones: [...b.zones].join(','),
    device: b.devices.size === 1 ? ([...b.devices][0] as string) : '',
    n: String(b.ids.size),
  };
}

const RULE_KEYS: Record<string, Key> = {
  'lamp-fault': 'ruleLampFault',
  'lamp-on-in-daylight': 'ruleLampOnInDaylight',
  congestion: 'ruleCongestion',
  'aqi-category': 'ruleAqiCategory',
  'device-offline': 'ruleDeviceOffline',
};

/** Built-in rules by their fixed ids; an own rule shows its id. */
export function ruleName(s: Store, rule: string): string {
  const key = RULE_KEYS[rule];
  return key ? s.t(key) : s.t('ruleOther', { rule });
}

/** A zone's name in the language shown (its id when the profile does not know it). */
export function zoneName(s: Store, id: string): string {
  return s.city?.zones.find((z) => z.id === id)?.name[s.lang] ?? id;
}

export type { Store };
export const store = new Store();
