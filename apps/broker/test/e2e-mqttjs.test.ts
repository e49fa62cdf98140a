/**
 * End to end: the real server (startServer) on 127.0.0.1 with TCP, TLS, WS and WSS listeners, and
 * MQTT.js 5 as the client over each of them.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import type mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../src/config.js';
import type { SessionRequestEvent } from '../src/mqtt-broker.js';
import { type RunningServer, startServer } from '../src/server.js';
import { createE2eCerts, type E2eCerts } from './helpers/certs.js';
import {
  ClientPool,
  Inbox,
  nextEvent,
  portOf,
  rawSocket,
  waitUntil,
  withTimeout,
} from './helpers/clients.js';

let certs: E2eCerts;
let server: RunningServer | undefined;
const pool = new ClientPool();
/** JSON log lines of the current server. */
let logLines: string[] = [];

beforeAll(() => {
  certs = createE2eCerts();
});

afterEach(async () => {
  await pool.closeAll();
  await server?.stop();
  server = undefined;
});

afterAll(() => certs?.cleanup());

/** Starts the server with the four listeners on 127.0.0.1: TLS with the PFX, WSS with PEM files. */
async function startE2eServer(): Promise<RunningServer> {
  const config = resolveConfig(
    {
      listeners: [
        { protocol: 'tcp', host: '127.0.0.1', port: 0 },
        {
          protocol: 'tls',
          host: '127.0.0.1',
          port: 0,
          certificate: { pfxFile: certs.serverPfx, password: certs.pfxPassword },
        },
        { protocol: 'ws', host: '127.0.0.1', port: 0, path: '/mqtt' },
        {
          protocol: 'wss',
          host: '127.0.0.1',
          port: 0,
          path: '/mqtt',
          certificate: { certFile: certs.serverCert, keyFile: certs.serverKey },
        },
      ],
    },
    { memory: true },
  );
  logLines = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      callback();
    },
  });
  const logger = pino({ level: 'info' }, sink);
  server = await startServer(config, logger);
  return server;
}

type Transport = 'tcp' | 'tls' | 'ws' | 'wss';

function urlFor(s: RunningServer, transport: Transport): string {
  const port = portOf(s, transport);
  switch (transport) {
    case 'tcp':
      return `mqtt://127.0.0.1:${port}`;
    case 'tls':
      return `mqtts://127.0.0.1:${port}`;
    case 'ws':
      return `ws://127.0.0.1:${port}/mqtt`;
    case 'wss':
      return `wss://127.0.0.1:${port}/mqtt`;
  }
}

function optionsFor(transport: Transport): mqtt.IClientOptions {
  // The server certificate's SAN holds IP:127.0.0.1 and DNS:localhost; verification stays on.
  return transport === 'tls' || transport === 'wss'
    ? { ca: certs.caPem, rejectUnauthorized: true, servername: 'localhost' }
    : {};
}

describe.each(['tcp', 'tls', 'ws', 'wss'] as const)('MQTT.js over %s', (transport) => {
  let url: string;
  let seq = 0;
  const id = (name: string) => `${transport}-${name}-${++seq}`;
  const connect = (options: mqtt.IClientOptions = {}) =>
    pool.connect(url, { ...optionsFor(transport), ...options });

  async function start(): Promise<RunningServer> {
    const s = await startE2eServer();
    url = urlFor(s, transport);
    return s;
  }

  it('[MQTT-3.1.4-1] accepts a client whose user name and password the sessionRequest event accepts', async () => {
    const s = await start();
    const seen: SessionRequestEvent[] = [];
    s.broker.on('sessionRequest', async (e) => {
      seen.push({ ...e });
      await new Promise((resolve) => setImmediate(resolve));
      e.accept = e.userName === 'alice' && e.password === 's3cret';
    });
    const client = await connect({ clientId: id('auth-ok'), username: 'alice', password: 's3cret' });
    expect(client.connected).toBe(true);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ userName: 'alice', password: 's3cret', isNew: true });
    // The connection works after the asynchronous decision.
    const inbox = new Inbox(client);
    await client.subscribeAsync('auth/ok', { qos: 1 });
    await client.publishAsync('auth/ok', 'after-auth', { qos: 1 });
    expect((await inbox.first('auth/ok')).payload.toString()).toBe('after-auth');
  });

  it('[MQTT-3.2.2-5] refuses with CONNACK 4 (bad user name or password) and closes; MQTT.js reports code 4', async () => {
    const s = await start();
    s.broker.on('sessionRequest', (e) => {
      if (e.password !== 'right') {
        e.accept = false;
        e.returnCode = 4;
      }
    });
    const error = await pool
      .connect(url, {
        ...optionsFor(transport),
        clientId: id('auth-bad'),
        username: 'alice',
        password: 'wrong',
      })
      .then(
        () => undefined,
        (e: unknown) => e as Error & { code?: number },
      );
    expect(error).toBeInstanceOf(Error);
    expect(error?.code).toBe(4);
    await waitUntil(() => s.broker.connections.size === 0, 3000, 'the refused connection to close');
  });

  it('[MQTT-3.2.2-5] refuses with CONNACK 5 (not authorized) by default when accept is false', async () => {
    const s = await start();
    s.broker.on('sessionRequest', (e) => {
      e.accept = false;
    });
    const error = await pool.connect(url, { ...optionsFor(transport), clientId: id('auth-no') }).then(
      () => undefined,
      (e: unknown) => e as Error & { code?: number },
    );
    expect(error?.code).toBe(5);
    expect(s.broker.sessions.find((x) => x.clientId.includes('auth-no'))).toBeUndefined();
  });

  it('[MQTT-4.7.1-2] [MQTT-4.7.1-3] routes by + and # wildcards, # including the parent level', async () => {
    await start();
    const sub = await connect({ clientId: id('wild-sub') });
    const inbox = new Inbox(sub);
    const granted = await sub.subscribeAsync({ 'w/+/c': { qos: 1 }, 'w/x/#': { qos: 1 } });
    expect(granted.map((g) => g.qos)).toEqual([1, 1]);
    const pub = await connect({ clientId: id('wild-pub') });
    for (const topic of ['w/b/c', 'w/b/d', 'w/x', 'w/x/y/z', 'w/b/c/d', 'v/b/c', 'w/x/c']) {
      await pub.publishAsync(topic, topic, { qos: 1 });
    }
    await pub.publishAsync('w/end/c', 'end', { qos: 1 });
    await inbox.take(1, 5000, (m) => m.topic === 'w/end/c');
    const topics = inbox.messages.map((m) => m.topic).sort();
    // w/x/c matches both filters: [MQTT-3.3.5-1] it is delivered (once or twice), never lost.
    expect([...new Set(topics)]).toEqual(['w/b/c', 'w/end/c', 'w/x', 'w/x/c', 'w/x/y/z']);
    for (const m of inbox.messages)
      expect(m.payload.toString()).toBe(m.topic === 'w/end/c' ? 'end' : m.topic);
  });

  it.each([
    ['[MQTT-3.3.5-1]', 0],
    ['[MQTT-4.3.2-1]', 1],
    ['[MQTT-4.3.3-1]', 2],
  ] as const)('%s delivers QoS %i both ways with the payload intact', async (_cite, qos) => {
    await start();
    const a = await connect({ clientId: id(`qos${qos}-a`) });
    const b = await connect({ clientId: id(`qos${qos}-b`) });
    const inboxA = new Inbox(a);
    const inboxB = new Inbox(b);
    await a.subscribeAsync(`q/to-a/${qos}`, { qos: 2 });
    await b.subscribeAsync(`q/to-b/${qos}`, { qos: 2 });
    // Binary payloads with every byte value, one big enough to span several TCP/TLS/WS frames.
    const small = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const big = randomBytes(200_000);
    await a.publishAsync(`q/to-b/${qos}`, small, { qos });
    await a.publishAsync(`q/to-b/${qos}`, big, { qos });
    await b.publishAsync(`q/to-a/${qos}`, big, { qos });
    await b.publishAsync(`q/to-a/${qos}`, Buffer.alloc(0), { qos });
    const atB = await inboxB.take(2);
    const atA = await inboxA.take(2);
    expect(atB[0]!.payload.equals(small)).toBe(true);
    expect(atB[1]!.payload.equals(big)).toBe(true);
    expect(atA[0]!.payload.equals(big)).toBe(true);
    expect(atA[1]!.payload.length).toBe(0);
    // [MQTT-3.8.4-6] delivered at the lower of the publish QoS and the granted QoS (2).
    for (const m of [...atA, ...atB]) expect(m.packet.qos).toBe(qos);
  });

  it('[MQTT-3.3.1-6] [MQTT-3.3.1-9] [MQTT-3.3.1-10] keeps retained messages for new subscribers and clears them with an empty payload', async () => {
    const s = await start();
    const pub = await connect({ clientId: id('ret-pub') });
    await pub.publishAsync('ret/lamp', 'on', { qos: 1, retain: true });
    await pub.publishAsync('ret/door', 'open', { qos: 0, retain: true });
    await waitUntil(
      () =>
        s.broker.messages.get('ret/lamp') !== undefined && s.broker.messages.get('ret/door') !== undefined,
      3000,
      'two retained messages',
    );
    const sub = await connect({ clientId: id('ret-sub') });
    const inbox = new Inbox(sub);
    await sub.subscribeAsync('ret/+', { qos: 1 });
    const retained = await inbox.take(2);
    expect(retained.map((m) => [m.topic, m.payload.toString(), m.packet.retain]).sort()).toEqual([
      ['ret/door', 'open', true],
      ['ret/lamp', 'on', true],
    ]);
    // A live message to an existing subscriber carries RETAIN 0 even when published retained.
    await pub.publishAsync('ret/lamp', 'off', { qos: 1, retain: true });
    const live = await inbox.take(3);
    expect(live[2]!.payload.toString()).toBe('off');
    expect(live[2]!.packet.retain).toBe(false);
    // An empty retained payload removes the retained message.
    await pub.publishAsync('ret/lamp', '', { qos: 1, retain: true });
    await waitUntil(
      () => s.broker.messages.get('ret/lamp') === undefined,
      3000,
      'the retained message to be removed',
    );
    const late = await connect({ clientId: id('ret-late') });
    const lateInbox = new Inbox(late);
    await late.subscribeAsync('ret/#', { qos: 1 });
    const [door] = await lateInbox.take(1);
    expect(door!.topic).toBe('ret/door');
    await pub.publishAsync('ret/end', 'x', { qos: 1 });
    await lateInbox.take(2);
    expect(lateInbox.messages.map((m) => m.topic)).toEqual(['ret/door', 'ret/end']);
  });

  it("[MQTT-3.1.2-8] publishes the will when the client's socket closes without DISCONNECT", async () => {
    await start();
    const watcher = await connect({ clientId: id('will-watch') });
    const inbox = new Inbox(watcher);
    await watcher.subscribeAsync('will/+', { qos: 1 });
    const dying = await connect({
      clientId: id('will-dying'),
      will: { topic: 'will/dying', payload: Buffer.from('gone'), qos: 1, retain: false },
    });
    const polite = await connect({
      clientId: id('will-polite'),
      will: { topic: 'will/polite', payload: Buffer.from('should not appear'), qos: 1, retain: false },
    });
    // [MQTT-3.14.4-3] a DISCONNECT discards the will.
    await polite.endAsync();
    dying.stream.destroy();
    const will = await inbox.first('will/dying');
    expect(will.payload.toString()).toBe('gone');
    expect(will.packet.qos).toBe(1);
    await connect({ clientId: id('will-end') }).then((c) => c.publishAsync('will/end', 'x', { qos: 1 }));
    await inbox.first('will/end');
    expect(inbox.messages.map((m) => m.topic)).not.toContain('will/polite');
  });

  it('[MQTT-3.1.2-4] [MQTT-3.2.2-2] resumes a persistent session after a reconnect: sessionPresent and the queued QoS 1 messages', async () => {
    const s = await start();
    const clientId = id('persist');
    const first = await connect({ clientId, clean: false });
    expect(pool.connackOf(first)?.sessionPresent).toBe(false);
    await first.subscribeAsync('persist/#', { qos: 1 });
    await first.endAsync();
    await waitUntil(
      () => s.broker.sessions.some((x) => x.clientId === clientId && !x.isConnected),
      3000,
      'the stored session',
    );
    const pub = await connect({ clientId: id('persist-pub') });
    for (let i = 0; i < 5; i++) await pub.publishAsync(`persist/${i}`, `queued-${i}`, { qos: 1 });
    await pub.publishAsync('persist/q0', 'qos0-may-be-dropped', { qos: 0 });

    const second = await pool.connect(
      url,
      { ...optionsFor(transport), clientId, clean: false },
      (c) => new Inbox(c),
    );
    expect(pool.connackOf(second)?.sessionPresent).toBe(true);
    const inbox = pool.inboxOf(second)!;
    const queued = await inbox.take(5, 5000, (m) => m.packet.qos === 1);
    expect(queued.map((m) => m.payload.toString())).toEqual([0, 1, 2, 3, 4].map((i) => `queued-${i}`));
    expect(queued.map((m) => m.topic)).toEqual([0, 1, 2, 3, 4].map((i) => `persist/${i}`));
    // The subscription survived too: a new message arrives without subscribing again.
    await pub.publishAsync('persist/live', 'live', { qos: 1 });
    expect((await inbox.first('persist/live')).payload.toString()).toBe('live');
  });

  it('[MQTT-3.1.4-2] a second client with the same client id takes over and the first is disconnected', async () => {
    const s = await start();
    const clientId = id('takeover');
    const first = await connect({ clientId });
    const firstClosed = nextEvent(first, 'close', 5000);
    const second = await connect({ clientId });
    await firstClosed;
    expect(first.connected).toBe(false);
    expect(second.connected).toBe(true);
    const connected = [...s.broker.connections.values()].filter((c) => c.clientId === clientId);
    expect(connected).toHaveLength(1);
    const inbox = new Inbox(second);
    await second.subscribeAsync('takeover/t', { qos: 1 });
    await second.publishAsync('takeover/t', 'still here', { qos: 1 });
    expect((await inbox.first('takeover/t')).payload.toString()).toBe('still here');
  });
});

describe.each(['tls', 'wss'] as const)('client certificates over %s', (transport) => {
  async function startRequiringCertificates(): Promise<string> {
    const config = resolveConfig(
      {
        listeners: [
          {
            protocol: transport,
            host: '127.0.0.1',
            port: 0,
            certificate: { pfxFile: certs.serverPfx, password: certs.pfxPassword },
            requireClientCertificate: true,
            clientCAFile: certs.caCert,
            ...(transport === 'wss' ? { path: '/mqtt' } : {}),
          },
        ],
      },
      { memory: true },
    );
    server = await startServer(config, pino({ level: 'silent' }));
    return urlFor(server, transport);
  }

  it('accepts a client presenting a certificate signed by the configured client CA', async () => {
    const url = await startRequiringCertificates();
    const client = await pool.connect(url, {
      ...optionsFor(transport),
      clientId: `${transport}-with-cert`,
      cert: readFileSync(certs.clientCert),
      key: readFileSync(certs.clientKey),
    });
    const inbox = new Inbox(client);
    await client.subscribeAsync('cert/t', { qos: 1 });
    await client.publishAsync('cert/t', 'mutual TLS', { qos: 1 });
    expect((await inbox.first('cert/t')).payload.toString()).toBe('mutual TLS');
  });

  it('refuses a client without a certificate when requireClientCertificate is set', async () => {
    const url = await startRequiringCertificates();
    const error = await pool
      .connect(url, { ...optionsFor(transport), clientId: `${transport}-no-cert` })
      .then(
        () => undefined,
        (e: unknown) => e as Error,
      );
    expect(error).toBeInstanceOf(Error);
    expect(server!.broker.connections.size).toBe(0);
  });
});

describe('malformed input', () => {
  it('[MQTT-4.8.0-1] malformed bytes close only the offending connection, which the error event and log name', async () => {
    const s = await startE2eServer();
    const errors: Array<{ connectionId: string; code: string }> = [];
    s.broker.on('error', (e) => {
      errors.push({ connectionId: e.connectionId, code: e.code });
    });
    const sub = await pool.connect(`ws://127.0.0.1:${portOf(s, 'ws')}/mqtt`, { clientId: 'malformed-watch' });
    const inbox = new Inbox(sub);
    await sub.subscribeAsync('mal/#', { qos: 1 });
    const pub = await pool.connect(`mqtt://127.0.0.1:${portOf(s, 'tcp')}`, { clientId: 'malformed-pub' });

    const socket = await rawSocket(portOf(s, 'tcp'));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    try {
      // A valid MQTT 3.1.1 CONNECT (client id "raw"), answered by CONNACK 0.
      const connect = Buffer.from([
        0x10, 15, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 60, 0, 3, 0x72, 0x61, 0x77,
      ]);
      const connack = withTimeout(
        new Promise<Buffer>((resolve) => socket.once('data', (d: Buffer) => resolve(d))),
        3000,
        'CONNACK on the raw socket',
      );
      socket.write(connect);
      expect([...(await connack)]).toEqual([0x20, 2, 0, 0]);
      const raw = [...s.broker.connections.values()].find((c) => c.clientId === 'raw');
      expect(raw?.remotePort).toBe(socket.localPort);
      // Packet type 0 is reserved, then junk: a malformed packet.
      socket.write(Buffer.from([0x00, 0x02, 0xff, 0xff, 0xde, 0xad, 0xbe, 0xef]));
      await withTimeout(closed, 3000, 'the server to close the malformed connection');

      await waitUntil(
        () => errors.some((e) => e.connectionId === raw!.connectionId),
        3000,
        'an error event naming the connection',
      );
      expect(logLines.some((l) => l.includes(raw!.connectionId))).toBe(true);
      // The other clients are untouched.
      expect(sub.connected && pub.connected).toBe(true);
      await pub.publishAsync('mal/after', 'still flowing', { qos: 1 });
      expect((await inbox.first('mal/after')).payload.toString()).toBe('still flowing');
      expect([...s.broker.connections.values()].map((c) => c.clientId).sort()).toEqual([
        'malformed-pub',
        'malformed-watch',
      ]);
    } finally {
      socket.destroy();
    }
  });
});
