import type { SessionDecision, SessionRequest } from '@broker/core';
import { describe, expect, it } from 'vitest';
import {
  bytesOf,
  collect,
  connected,
  flush,
  makeBroker,
  rawConnect,
  rawPacket,
  TestClient,
  utf8Field,
} from './helpers/harness.js';

/** A promise and the functions that settle it, for decisions the test answers later. */
function deferred<T>(): {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
} {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('the first packet [MQTT-3.1.0-1]', () => {
  it('[MQTT-3.1.0-1] closes a connection whose first packet is PUBLISH, answering nothing', () => {
    const { broker } = makeBroker();
    const watcher = connected(broker, 'watcher');
    watcher.subscribe('#');
    watcher.take();
    const c = new TestClient(broker).publish('a/b', 'early');
    expect(c.closed).toBe(true);
    expect(c.take()).toEqual([]);
    expect(watcher.take()).toEqual([]);
  });

  it('[MQTT-3.1.0-1] closes a connection whose first packet is PINGREQ, answering nothing', () => {
    const { broker } = makeBroker();
    const c = new TestClient(broker).send({ type: 'pingreq' });
    expect(c.closed).toBe(true);
    expect(c.take()).toEqual([]);
  });

  it('[MQTT-3.1.0-1] closes a connection whose first packet is SUBSCRIBE, answering nothing', () => {
    const { broker } = makeBroker();
    const errors = collect(broker, 'error');
    const c = new TestClient(broker).subscribe('a/#');
    expect(c.closed).toBe(true);
    expect(c.take()).toEqual([]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ connectionId: c.connectionId, code: 'CORE_PROTOCOL_VIOLATION' });
    expect(broker.sessions).toEqual([]);
  });

  it('[MQTT-3.1.0-1] closes a connection that sends nothing within limits.connectTimeoutMs, not before', () => {
    const { broker, clock } = makeBroker({ limits: { connectTimeoutMs: 5000 } });
    const errors = collect(broker, 'error');
    const c = new TestClient(broker);
    for (let t = 0; t < 4900; t += 100) {
      clock.advance(100);
      expect(c.closed).toBe(false);
    }
    clock.advance(1100);
    expect(c.closed).toBe(true);
    expect(c.take()).toEqual([]);
    expect(errors.map((e) => e.code)).toEqual(['CORE_CONNECT_TIMEOUT']);
  });

  it('[MQTT-3.1.0-1] bytes that are not yet a whole CONNECT do not extend the connect timeout', () => {
    const { broker, clock } = makeBroker({ limits: { connectTimeoutMs: 5000 } });
    const errors = collect(broker, 'error');
    const c = new TestClient(broker);
    clock.advance(3000);
    c.sendBytes([0x10, 0x20, 0x00]); // the start of a CONNECT of 32 bytes
    clock.advance(1900);
    expect(c.closed).toBe(false);
    clock.advance(1100);
    expect(c.closed).toBe(true);
    expect(errors.map((e) => e.code)).toEqual(['CORE_CONNECT_TIMEOUT']);
  });

  it('[MQTT-3.1.0-1] the connect timeout does not close a client that connected in time', () => {
    const { broker, clock } = makeBroker({ limits: { connectTimeoutMs: 5000 } });
    const c = new TestClient(broker);
    clock.advance(4000);
    c.connect({ clientId: 'late-but-in-time' });
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 0 }]);
    clock.advance(60_000);
    expect(c.closed).toBe(false);
  });
});

describe('a second CONNECT [MQTT-3.1.0-2]', () => {
  it('[MQTT-3.1.0-2] closes the connection on a second CONNECT, as a protocol violation', () => {
    const { broker } = makeBroker();
    const disconnected = collect(broker, 'disconnected');
    const c = connected(broker, 'twice');
    c.connect({ clientId: 'twice' });
    expect(c.closed).toBe(true);
    expect(c.take()).toEqual([]);
    expect(disconnected).toMatchObject([{ clientId: 'twice', statusCode: 600 }]);
  });
});

describe('CONNACK return codes', () => {
  it('[MQTT-3.1.2-2] answers CONNACK 0x01 and closes for protocol level 5 with name MQTT', () => {
    const { broker } = makeBroker();
    const errors = collect(broker, 'error');
    const c = new TestClient(broker).sendBytes(rawConnect('MQTT', 5));
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 1 }]);
    expect(c.closed).toBe(true);
    expect(errors[0]).toMatchObject({ code: 'CODEC_UNSUPPORTED_PROTOCOL_LEVEL', errorCode: 600 });
    expect(broker.sessions).toEqual([]);
  });

  it('[MQTT-3.1.2-2] the CONNACK 0x01 is flushed before the close, even when the client reads slowly', () => {
    const { broker } = makeBroker();
    const c = new TestClient(broker);
    c.peer.stopReading();
    c.sendBytes(rawConnect('MQTT', 5));
    c.peer.startReading();
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 1 }]);
    expect(c.closed).toBe(true);
  });

  it('[MQTT-3.2.2-5] a refusing CONNACK is flushed before the close, even when the client reads slowly', () => {
    const { broker } = makeBroker();
    const c = new TestClient(broker);
    c.peer.stopReading();
    c.connect({ clientId: '', cleanSession: false });
    c.peer.startReading();
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 2 }]);
    expect(c.closed).toBe(true);
  });

  it('[MQTT-3.1.2-2] answers CONNACK 0x01 and closes for protocol level 3 with name MQTT', () => {
    const { broker } = makeBroker();
    const c = new TestClient(broker).sendBytes(rawConnect('MQTT', 3));
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 1 }]);
    expect(c.closed).toBe(true);
  });

  it('[MQTT-3.1.2-1] closes without CONNACK for a protocol name that is not MQTT', () => {
    const { broker } = makeBroker();
    const c = new TestClient(broker).sendBytes(rawConnect('MQTX', 4));
    expect(c.take()).toEqual([]);
    expect(c.closed).toBe(true);
  });

  it('[MQTT-3.1.3-6] accepts an empty client id with clean session 1 and assigns a unique id', () => {
    const { broker } = makeBroker();
    const events = collect(broker, 'connected');
    const a = new TestClient(broker).connect({ clientId: '', cleanSession: true });
    const b = new TestClient(broker).connect({ clientId: '', cleanSession: true });
    expect(a.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 0 }]);
    expect(b.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 0 }]);
    expect(events).toHaveLength(2);
    const [ea, eb] = events;
    expect(ea!.clientId.length).toBeGreaterThan(0);
    expect(eb!.clientId.length).toBeGreaterThan(0);
    expect(ea!.clientId).not.toBe(eb!.clientId);
    expect(broker.sessions.map((s) => s.clientId).sort()).toEqual([ea!.clientId, eb!.clientId].sort());
  });

  it('[MQTT-3.1.3-6] an assigned client id does not collide with an existing session', () => {
    const { broker } = makeBroker({ assignedClientIdPrefix: 'gen-' });
    connected(broker, 'gen-1', { cleanSession: false }).disconnect();
    const events = collect(broker, 'connected');
    new TestClient(broker).connect({ clientId: '' });
    expect(events[0]!.clientId).not.toBe('gen-1');
    expect(events[0]!.clientId.startsWith('gen-')).toBe(true);
  });

  it('[MQTT-3.1.3-8] answers CONNACK 0x02 and closes for an empty client id with clean session 0', () => {
    const { broker } = makeBroker();
    const c = new TestClient(broker).connect({ clientId: '', cleanSession: false });
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 2 }]);
    expect(c.closed).toBe(true);
    expect(broker.sessions).toEqual([]);
  });

  it('answers CONNACK 0x02 for a client id longer than limits.maxClientIdBytes', () => {
    const { broker } = makeBroker({ limits: { maxClientIdBytes: 8 } });
    const c = new TestClient(broker).connect({ clientId: '123456789' });
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 2 }]);
    expect(c.closed).toBe(true);
    expect(connected(broker, '12345678').closed).toBe(false);
  });
});

describe('the authenticate hook', () => {
  const will = { topic: 'will/x', payload: bytesOf('bye'), qos: 0 as const, retain: false };

  function withAuth(authenticate: (request: SessionRequest) => SessionDecision | Promise<SessionDecision>) {
    return makeBroker({ hooks: { authenticate }, limits: { hookTimeoutMs: 3000 } });
  }

  it('passes the credentials of the CONNECT and accepts on a synchronous true', () => {
    const requests: SessionRequest[] = [];
    const { broker } = withAuth((request) => {
      requests.push(request);
      return true;
    });
    const c = new TestClient(broker).connect({ clientId: 'u', username: 'alice', password: bytesOf('pw') });
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 0 }]);
    expect(requests).toMatchObject([
      { clientId: 'u', username: 'alice', isNew: true, hasStoredSession: false },
    ]);
    expect(new TextDecoder().decode(requests[0]!.password)).toBe('pw');
  });

  it('[MQTT-3.2.2-4] [MQTT-3.2.2-5] a synchronous false refuses with CONNACK 0x05, session present 0, then closes', () => {
    const { broker } = withAuth(() => false);
    const c = new TestClient(broker).connect({ clientId: 'u', cleanSession: false });
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 5 }]);
    expect(c.closed).toBe(true);
    expect(broker.sessions).toEqual([]);
  });

  it('[MQTT-3.2.2-4] a refusal carries session present 0 even when a session is stored', () => {
    let allow = true;
    const { broker } = withAuth(() => allow);
    connected(broker, 'stored', { cleanSession: false }).disconnect();
    allow = false;
    const c = new TestClient(broker).connect({ clientId: 'stored', cleanSession: false });
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 5 }]);
    expect(c.closed).toBe(true);
    // The stored session is left alone.
    expect(broker.sessions.map((s) => s.clientId)).toEqual(['stored']);
  });

  it('[MQTT-3.2.2-5] a synchronous code 4 refuses with CONNACK 0x04 and closes; the will is not published', () => {
    const { broker } = withAuth((r) => (r.clientId === 'watcher' ? true : 4));
    const watcher = connected(broker, 'watcher');
    watcher.subscribe('will/#');
    watcher.take();
    const c = new TestClient(broker).connect({ clientId: 'u', will });
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 4 }]);
    expect(c.closed).toBe(true);
    expect(watcher.take()).toEqual([]);
    expect(watcher.closed).toBe(false);
  });

  it('an async resolve(true) accepts once the promise settles', async () => {
    const { broker } = withAuth(async () => true);
    const c = new TestClient(broker).connect({ clientId: 'u' });
    await flush();
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 0 }]);
    expect(c.closed).toBe(false);
  });

  it('[MQTT-3.2.2-5] an async rejection refuses with CONNACK 0x05 and reports CORE_HOOK_FAILED', async () => {
    const { broker } = withAuth(async () => {
      throw new Error('database down');
    });
    const errors = collect(broker, 'error');
    const c = new TestClient(broker).connect({ clientId: 'u' });
    await flush();
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 5 }]);
    expect(c.closed).toBe(true);
    expect(errors.map((e) => e.code)).toEqual(['CORE_HOOK_FAILED']);
  });

  it('a synchronous throw refuses with CONNACK 0x05 and reports CORE_HOOK_FAILED', () => {
    const { broker } = withAuth(() => {
      throw new Error('bug');
    });
    const errors = collect(broker, 'error');
    const c = new TestClient(broker).connect({ clientId: 'u' });
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 5 }]);
    expect(c.closed).toBe(true);
    expect(errors.map((e) => e.code)).toEqual(['CORE_HOOK_FAILED']);
  });

  it('a never-settling decision refuses with CONNACK 0x05 after limits.hookTimeoutMs, not before', async () => {
    const { broker, clock } = withAuth(() => new Promise<SessionDecision>(() => {}));
    const errors = collect(broker, 'error');
    const c = new TestClient(broker).connect({ clientId: 'u' });
    clock.advance(2999);
    await flush();
    expect(c.take()).toEqual([]);
    expect(c.closed).toBe(false);
    clock.advance(1);
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 5 }]);
    expect(c.closed).toBe(true);
    expect(errors.map((e) => e.code)).toEqual(['CORE_HOOK_TIMEOUT']);
  });

  it('a pending decision is not cut short by the connect timeout', async () => {
    const decision = deferred<SessionDecision>();
    const { broker, clock } = makeBroker({
      hooks: { authenticate: () => decision.promise },
      limits: { connectTimeoutMs: 1000, hookTimeoutMs: 5000 },
    });
    const c = new TestClient(broker).connect({ clientId: 'u' });
    clock.advance(3000);
    expect(c.closed).toBe(false);
    decision.resolve(true);
    await flush();
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 0 }]);
  });

  it('packets sent while the async decision is pending are processed after CONNACK, in order', async () => {
    const decision = deferred<SessionDecision>();
    const { broker } = withAuth(() => decision.promise);
    const c = new TestClient(broker).connect({ clientId: 'u' });
    c.subscribe('t/#', 1, 7);
    c.publish('t/1', 'first', 1, { packetId: 8 });
    c.send({ type: 'pingreq' });
    c.publish('t/2', 'second', 0);
    await flush();
    expect(c.take()).toEqual([]);
    decision.resolve(true);
    await flush();
    const packets = c.take();
    expect(packets.map((p) => p.type)).toEqual([
      'connack',
      'suback',
      'publish',
      'puback',
      'pingresp',
      'publish',
    ]);
    expect(packets[0]).toEqual({ type: 'connack', sessionPresent: false, returnCode: 0 });
    expect(packets[1]).toEqual({ type: 'suback', packetId: 7, returnCodes: [1] });
    expect(packets[3]).toEqual({ type: 'puback', packetId: 8 });
    const publishes = packets.filter((p) => p.type === 'publish');
    expect(publishes.map((p) => new TextDecoder().decode(p.payload))).toEqual(['first', 'second']);
  });

  it('packets pipelined in the same chunk as CONNECT wait for the decision too', async () => {
    const decision = deferred<SessionDecision>();
    const { broker } = withAuth(() => decision.promise);
    const c = new TestClient(broker);
    const { encode } = await import('@broker/codec');
    const chunk = [
      ...encode({
        type: 'connect',
        protocolName: 'MQTT',
        protocolLevel: 4,
        clientId: 'u',
        cleanSession: true,
        keepaliveSeconds: 0,
      }),
      ...encode({ type: 'pingreq' }),
    ];
    c.sendBytes(chunk);
    await flush();
    expect(c.take()).toEqual([]);
    decision.resolve(true);
    await flush();
    expect(c.take().map((p) => p.type)).toEqual(['connack', 'pingresp']);
  });

  it('packets pending behind a refused CONNECT are never processed', async () => {
    const decision = deferred<SessionDecision>();
    const { broker } = withAuth(() => decision.promise);
    const subscribed = collect(broker, 'subscribed');
    const c = new TestClient(broker).connect({ clientId: 'u' }).subscribe('t/#');
    decision.resolve(5);
    await flush();
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 5 }]);
    expect(c.closed).toBe(true);
    expect(broker.sessions).toEqual([]);
    expect(subscribed).toEqual([]);
  });
});

describe('the connectionRequest hook', () => {
  it('false destroys the connection before anything is read from it', () => {
    const seen: string[] = [];
    const { broker } = makeBroker({
      hooks: {
        connectionRequest: (r) => {
          seen.push(r.remoteAddress);
          return r.remoteAddress !== '10.0.0.66';
        },
        authenticate: () => {
          throw new Error('must not be asked');
        },
      },
    });
    const connectedEvents = collect(broker, 'connected');
    const c = new TestClient(broker, { remoteAddress: '10.0.0.66' });
    expect(c.closed).toBe(true);
    c.connect({ clientId: 'blocked' });
    expect(c.take()).toEqual([]);
    expect(connectedEvents).toEqual([]);
    expect(broker.connections).toEqual([]);
    expect(seen).toEqual(['10.0.0.66']);
  });

  it('true attaches the connection; an async true too', async () => {
    const { broker } = makeBroker({ hooks: { connectionRequest: async () => true } });
    const c = new TestClient(broker).connect({ clientId: 'ok' });
    await flush();
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 0 }]);
  });
});

describe('malformed packets', () => {
  function setup() {
    const { broker } = makeBroker();
    const errors = collect(broker, 'error');
    const healthy = connected(broker, 'healthy');
    healthy.subscribe('t/#');
    healthy.take();
    const publisher = connected(broker, 'pub');
    return { broker, errors, healthy, publisher };
  }

  it('[MQTT-4.8.0-1] a malformed packet closes only that connection; a healthy subscriber still receives (error 600, CODEC_ code)', () => {
    const { broker, errors, healthy, publisher } = setup();
    const broken = connected(broker, 'broken');
    // Packet type 0 is reserved.
    broken.sendBytes([0x00, 0x00]);
    expect(broken.closed).toBe(true);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.connectionId).toBe(broken.connectionId);
    expect(errors[0]!.errorCode).toBe(600);
    expect(errors[0]!.code).toMatch(/^CODEC_/);
    publisher.publish('t/1', 'still here');
    expect(healthy.takePublishes()).toMatchObject([{ topic: 't/1', payload: 'still here' }]);
    expect(healthy.closed).toBe(false);
  });

  it('[MQTT-3.8.1-1] a SUBSCRIBE with wrong reserved flags closes the connection with CODEC_INVALID_FLAGS', () => {
    const { broker, errors, healthy, publisher } = setup();
    const broken = connected(broker, 'broken');
    broken.sendBytes(rawPacket(0x80, [0x00, 0x01, ...utf8Field('x'), 0x00]));
    expect(broken.closed).toBe(true);
    expect(broken.take()).toEqual([]);
    expect(errors).toMatchObject([{ errorCode: 600, code: 'CODEC_INVALID_FLAGS' }]);
    publisher.publish('t/2', 'ok');
    expect(healthy.takePublishes()).toHaveLength(1);
  });

  it('[MQTT-3.3.2-2] a PUBLISH whose topic has a wildcard closes the connection with error 601', () => {
    const { broker, errors, healthy, publisher } = setup();
    const broken = connected(broker, 'broken');
    broken.sendBytes(rawPacket(0x30, [...utf8Field('t/+'), ...bytesOf('x')]));
    expect(broken.closed).toBe(true);
    expect(errors).toMatchObject([
      { connectionId: broken.connectionId, errorCode: 601, code: 'CODEC_INVALID_TOPIC_NAME' },
    ]);
    expect(healthy.take()).toEqual([]);
    publisher.publish('t/3', 'fine');
    expect(healthy.takePublishes()).toMatchObject([{ topic: 't/3' }]);
  });

  it('[MQTT-3.1.2-8] a malformed packet is an abnormal end: the will is published', () => {
    const { broker, healthy } = setup();
    const broken = connected(broker, 'broken', {
      will: { topic: 't/will', payload: bytesOf('broken died'), qos: 0, retain: false },
    });
    broken.sendBytes([0xf0, 0x00]);
    expect(broken.closed).toBe(true);
    expect(healthy.takePublishes()).toMatchObject([{ topic: 't/will', payload: 'broken died' }]);
  });

  it('a packet larger than limits.maxPacketBytes closes the connection', () => {
    const { broker } = makeBroker({ limits: { maxPacketBytes: 64 } });
    const errors = collect(broker, 'error');
    const c = connected(broker, 'big');
    c.publish('t', 'x'.repeat(100));
    expect(c.closed).toBe(true);
    expect(errors[0]!.code).toBe('CODEC_PACKET_TOO_LARGE');
  });

  it('a server-only packet (CONNACK) from a client closes the connection', () => {
    const { broker } = makeBroker();
    const c = connected(broker, 'c');
    c.send({ type: 'connack', sessionPresent: false, returnCode: 0 });
    expect(c.closed).toBe(true);
  });
});

describe('limits.maxConnections', () => {
  it('closes connections beyond the limit at once; a slot frees when one closes', () => {
    const { broker } = makeBroker({ limits: { maxConnections: 2 } });
    const a = connected(broker, 'a');
    const b = new TestClient(broker); // not yet connected: still counts
    const c = new TestClient(broker);
    expect(c.closed).toBe(true);
    expect(broker.connections).toHaveLength(2);
    a.disconnect();
    b.connect({ clientId: 'b' });
    expect(b.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 0 }]);
    const d = connected(broker, 'd');
    expect(d.closed).toBe(false);
  });
});

describe('limits.maxConnections with an async connectionRequest', () => {
  it('connections accepted while their decision was pending still respect the limit', async () => {
    const { broker } = makeBroker({
      limits: { maxConnections: 1 },
      hooks: { connectionRequest: async () => true },
    });
    const a = new TestClient(broker);
    const b = new TestClient(broker);
    await flush();
    expect([a.closed, b.closed]).toEqual([false, true]);
    expect(broker.connections).toHaveLength(1);
  });
});

describe('closed broker', () => {
  it('destroys connections accepted after close()', async () => {
    const { broker } = makeBroker();
    broker.close();
    const c = new TestClient(broker);
    expect(c.closed).toBe(true);
    await flush();
  });
});
