/**
 * Changes one node makes that the others must act on at once, not at the next check: a device's credentials
 * (revoked, new token) end its MQTT connection wherever it is connected; ended sessions (logout, new password,
 * disabled account) close their live sockets on every node. The PostgreSQL stores send them with NOTIFY in the
 * statement that makes the change (delivered when it commits, to every node that LISTENs, the sender too);
 * each node follows them on a connection of its own (StateDb.listen).
 *
 * A notification sent while a node's listening connection is down is lost to that node: its REST requests and
 * new connections are still refused (every check reads the database), but a socket or device connection that
 * was open stays open until it ends or its session expires. docs/cluster-state.md lists this.
 */

/** The channel every node LISTENs on. */
export const STATE_CHANNEL = 'citypulse_state';

export type StateChange =
  | { kind: 'device-credentials'; id: string }
  | { kind: 'sessions-ended'; sessionId: string }
  | { kind: 'sessions-ended'; username: string };

/** The change as a NOTIFY payload (JSON; PostgreSQL caps payloads at 8000 bytes, ids and usernames are short). */
export const changePayload = (c: StateChange): string => JSON.stringify(c);

/** A payload back as a change; undefined for anything else (another version's kind, a stray NOTIFY). */
export function parseChange(payload: string): StateChange | undefined {
  try {
    const c = JSON.parse(payload) as Record<string, unknown>;
    if (c.kind === 'device-credentials' && typeof c.id === 'string') return { kind: c.kind, id: c.id };
    if (c.kind === 'sessions-ended' && typeof c.sessionId === 'string') return { kind: c.kind, sessionId: c.sessionId };
    if (c.kind === 'sessions-ended' && typeof c.username === 'string') return { kind: c.kind, username: c.username };
  } catch {
    /* not ours */
  }
  return undefined;
}
