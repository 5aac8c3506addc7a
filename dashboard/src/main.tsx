/** Entry: a token in the URL fragment (`/wall#token=…`, never sent to the server or its logs) is adopted for
 * this tab; otherwise the stored session, if any, is resumed. */
import { render } from 'preact';
import { App } from './app.tsx';
import { store } from './store.ts';
import './styles.css';

document.documentElement.lang = store.lang;
const fragment = new URLSearchParams(location.hash.slice(1));
const handed = fragment.get('token');
if (handed) {
  history.replaceState(null, '', location.pathname + location.search);
  void store.adoptToken(handed);
} else if (store.session) {
  store.start();
}
render(<App />, document.getElementById('app') as HTMLElement);
