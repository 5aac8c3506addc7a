// Entry of the store worker thread. The platform runs TypeScript through tsx (`node --import tsx`), whose
// loader a worker thread does not inherit for its own entry module: register it here, then load the worker.
import { workerData } from 'node:worker_threads';

if (workerData.entry.endsWith('.ts')) {
  const { register } = await import('tsx/esm/api');
  register();
}
await import(workerData.entry);
