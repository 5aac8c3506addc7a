/**
 * Where the platform's own files are, whether it runs as TypeScript sources (tsx: `bin/citypulse.ts`) or compiled
 * (`dist/bin/citypulse.js`, built by `npm run build`). Files loaded by path at run time (the dashboard's build,
 * the city profiles, the store worker) are found from here, not from a module's own folder, which differs
 * between the two.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The project folder, holding package.json, node_modules/, cities/, dashboard/dist and the compiled dist/: the
 * nearest folder above this module with a package.json (core/ under the sources, dist/core/ compiled).
 */
export const PROJECT_ROOT = projectRoot(path.dirname(fileURLToPath(import.meta.url)));

function projectRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json in ${from} or any folder above it`);
  }
}
