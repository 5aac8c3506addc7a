/** Entry: a token in the URL fragment (`/wall#token=…`, never sent to the server or its logs) is adopted for
 * this tab; otherwise the stored session, if any, is resumed. `#sound=off` mutes this screen's alarm sound. */
import { render } from 'preact';
import { App } from './app.tsx';
import { setSoundEnabled } from './sound.ts';
import { store } from './store.ts';
import './styles.css';

document.documentElement.lang = store.lang;
const fragment = new URLSearchParams(location.hash.slice(1));
// `#sound=off` (or on) sets this screen's alarm sound, e.g. in a wall screen's kiosk URL.
const sound = fragment.get('sound');
if (sound === 'off' || sound === 'on') {
  setSoundEnabled(sound === 'on');
  store.sound = sound === 'on';
  if (!fragment.get('token')) history.replaceState(null, '', location.pathname + location.search);
}
const handed = fragment.get('token');
if (handed) {
  history.replaceState(null, '', location.pathname + location.search);
  void store.adoptToken(handed);
} else if (store.session) {
  store.start();
}
render(<App />, document.getElementById('app') as HTMLElement);
