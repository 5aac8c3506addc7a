/** Preact glue: re-render on store changes (at most once a frame), and a tiny path router. */
import { useEffect, useReducer } from 'preact/hooks';
import { store, type Store } from './store.ts';

export function useStore(): Store {
  const [, bump] = useReducer((n: number) => n + 1, 0);
  useEffect(() => store.subscribe(() => bump(undefined)), []);
  return store;
}

/** Client-side navigation; dashboard-api serves index.html for every dashboard path. */
export function navigate(path: string): void {
  if (location.pathname === path) return;
  history.pushState(null, '', path);
  store.changed();
}

addEventListener('popstate', () => store.changed());
