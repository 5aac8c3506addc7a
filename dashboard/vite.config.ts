/**
 * Builds the dashboard into dashboard/dist (served by dashboard-api/static.ts). Everything is bundled: no CDN,
 * no font or tile server at run time. Preact's JSX through esbuild's automatic runtime (no plugin needed).
 * dashboard/public (the favicon.ico that browsers ask for by themselves) is copied as it is.
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  publicDir: 'public',
  logLevel: 'warn',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 400,
  },
});
