/**
 * The live API's budget of frames a second to sockets without batching (api.maxUnbatchedFramesPerSecond), kept
 * apart from the routing in live.ts because it has its own state and clock; why and how: createFrameBudget.
 */
import type { Logger } from '../core/logger.ts';
import type { LiveSocket } from './live-protocol.ts';

/** A subscription whose cost grows with the city: everything, a zone or a family (not one device). */
export const isBroad = (room: string) => room === 'all' || room.startsWith('zone:') || room.startsWith('family:');

export interface FrameBudget {
  /** Counts `n` frames just sent to unbatched sockets; closes the window once a second has passed. */
  sentUnbatched(n: number): void;
  /**
   * An unbatched socket takes a broad subscription: refused (the reason returned) while the platform is over
   * the budget, unless it holds one already; else it is among the sockets the budget may shed from now.
   */
  admitBroad(socket: LiveSocket): string | undefined;
  /** The socket holds no broad subscription any more (or left). */
  forget(socketId: string): void;
}

/**
 * The budget of frames to unbatched sockets. Each event is a frame and a write system call per unbatched
 * socket in its rooms (~20 µs on loopback): 200 of them watching everything at 5,000 readings/s were ~2 million
 * frames a second, and the platform's thread stopped running its timers for 80–105 s (`npm run bench --
 * fanout`, the unbatched comparison). It is not a slow client (their buffers stay empty), so the slow-consumer
 * bound does not see it. So the frames are counted where they are sent (the check rides on the sending, not on
 * a timer, which that load delays); once two seconds in a row were over the budget, the newest unbatched sockets
 * holding a broad subscription (everything, a zone, a family: the ones whose cost grows with the city) are
 * told why (`offline`) and disconnected, as many as the budget needs (an even share per socket assumed; the
 * oldest always stays), and new broad subscriptions of unbatched sockets are refused
 * (CP_API_LIVE_UNBATCHED_BUSY) from the first second over it until a second is under it again. Batched
 * sockets and device subscriptions are never shed.
 */
export function createFrameBudget(maxFrames: number, log: Logger): FrameBudget {
  /** Unbatched sockets with a broad subscription, in the order they took their first one (the newest last). */
  const broadUnbatched = new Map<string, LiveSocket>();
  let frames = 0;
  let windowStart = performance.now();
  /** Frames a second to unbatched sockets in the last whole window (0 until one ended). */
  let rate = 0;
  /** Whole windows in a row over the budget. */
  let overWindows = 0;
  /** Counts `n` frames just sent to unbatched sockets; closes the window once a second has passed. */
  const sentUnbatched = (n: number) => {
    if (maxFrames === 0) return;
    frames += n;
    const now = performance.now();
    if (now - windowStart < 1000) return;
    rate = (frames * 1000) / (now - windowStart);
    frames = 0;
    windowStart = now;
    overWindows = rate > maxFrames ? overWindows + 1 : 0;
    // Two seconds in a row: one over it can be the catch-up after a stall (measured: the last socket shed).
    if (overWindows >= 2 && broadUnbatched.size > 0) shed();
  };
  const shed = () => {
    // The oldest stays whatever the rate: one screen may always watch (its cost is the event rate itself), and
    // the rate after a stall includes its catch-up (measured: otherwise the last one went too).
    const n = Math.min(broadUnbatched.size - 1, Math.ceil(broadUnbatched.size * (1 - maxFrames / rate)));
    if (n <= 0) return;
    const newest = [...broadUnbatched.values()].slice(-n);
    log.warn(
      { rate: Math.round(rate), limit: maxFrames, disconnected: newest.length },
      'socket.io: too many frames to sockets without batching; the newest ones watching a zone, a family or everything are disconnected',
    );
    for (const socket of newest) {
      broadUnbatched.delete(socket.id);
      // Out of every room at once: the disconnect itself waits for the socket's write buffer to drain, and
      // meanwhile it would still be sent (and counted) every event.
      for (const room of [...socket.rooms]) if (room !== socket.id) void socket.leave(room);
      socket.emit('offline', {
        reason: `${Math.round(rate)} frames a second to sockets without batching, over api.maxUnbatchedFramesPerSecond (${maxFrames}): connect with auth.batch: true (CP_API_LIVE_UNBATCHED_BUSY)`,
      });
      socket.disconnect(true);
    }
  };
  /**
   * A broad subscription of an unbatched socket is refused while the last second was over the budget; a quiet
   * spell (no frame sent to close the window for 2 s) ends the refusal, and the window closed next is then
   * measured over that whole spell.
   */
  const unbatchedBusy = () => maxFrames > 0 && rate > maxFrames && performance.now() - windowStart < 2000;
  return {
    sentUnbatched,
    admitBroad(socket) {
      if (!broadUnbatched.has(socket.id) && unbatchedBusy()) {
        return `the platform already sends ${Math.round(rate)} frames a second to sockets without batching (api.maxUnbatchedFramesPerSecond ${maxFrames}): connect with auth.batch: true, or subscribe to one device`;
      }
      broadUnbatched.set(socket.id, socket);
      return undefined;
    },
    forget(socketId) {
      broadUnbatched.delete(socketId);
    },
  };
}
