import { describe, expect, it } from 'vitest';
import { Message, MessageState } from '../src/message.js';
import { Session } from '../src/session.js';

/** The Session's own bookkeeping: its maps exist only once something is put in them. */
describe('Session state', () => {
  const delivery = (packetId: number) => ({
    message: new Message(1, 't', new Uint8Array(0), 1, false, true),
    qos: 1 as const,
    retain: false,
    packetId,
    state: MessageState.AwaitingPuback,
    dup: false,
  });

  it('reads as empty before anything was added, and removing then finds nothing', () => {
    const session = new Session('idle', true);
    expect(session.subscriptions.size).toBe(0);
    expect(session.inflight.size).toBe(0);
    expect(session.incoming.size).toBe(0);
    expect(session.unsubscribe('a/b')).toBe(false);
    expect(session.removeInflight(1)).toBe(false);
    expect(session.removeIncoming(1)).toBe(false);
    // Two idle sessions do not share what one of them is given.
    const other = new Session('other', true);
    session.subscribe('a/b', 1);
    expect(session.subscriptions.get('a/b')).toBe(1);
    expect(other.subscriptions.size).toBe(0);
  });

  it('keeps subscriptions, in-flight and incoming records until removed or cleared', () => {
    const session = new Session('s', false);
    session.subscribe('a/#', 2);
    session.subscribe('b', 0);
    expect([...session.subscriptions]).toEqual([
      ['a/#', 2],
      ['b', 0],
    ]);
    expect(session.unsubscribe('b')).toBe(true);
    expect([...session.subscriptions.keys()]).toEqual(['a/#']);

    session.addInflight(delivery(1));
    session.addInflight(delivery(2));
    expect([...session.inflight.keys()]).toEqual([1, 2]);
    // Identifiers in flight are skipped [MQTT-2.3.1-2].
    expect(session.allocatePacketId()).toBe(3);
    expect(session.removeInflight(1)).toBe(true);
    expect([...session.inflight.keys()]).toEqual([2]);

    const message = new Message(2, 't', new Uint8Array(0), 2, false, true);
    session.addIncoming({ message, packetId: 7, dup: false, state: MessageState.AwaitingPubrel });
    expect(session.incoming.get(7)?.message).toBe(message);
    expect(session.removeIncoming(7)).toBe(true);
    expect(session.incoming.size).toBe(0);

    session.clearSubscriptions();
    session.clearInflight();
    session.clearIncoming();
    expect(session.subscriptions.size + session.inflight.size + session.incoming.size).toBe(0);
    expect(session.allocatePacketId()).toBe(4);
  });
});
