/**
 * The MqttBroker facade: the reference component's methods, properties and settings, over real
 * sockets with MQTT.js.
 */
import { readFileSync, rmSync } from 'node:fs';
import type mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProtocol, CertStoreType, MqttBroker } from '../src/mqtt-broker.js';
import { SettingError } from '../src/settings.js';
import { createE2eCerts, type E2eCerts } from './helpers/certs.js';
import { ClientPool, Inbox, waitUntil } from './helpers/clients.js';

let broker: MqttBroker | undefined;
const pool = new ClientPool();
let certs: E2eCerts;

beforeAll(() => {
  certs = createE2eCerts();
});
afterAll(() => rmSync(certs.dir, { recursive: true, force: true }));
afterEach(async () => {
  await pool.closeAll();
  await broker?.shutdown();
  broker = undefined;
});

async function startTcp(setup?: (b: MqttBroker) => void): Promise<{ broker: MqttBroker; url: string }> {
  broker = new MqttBroker();
  broker.addListener({ protocol: 'tcp', host: '127.0.0.1', port: 0 });
  setup?.(broker);
  await broker.startListening();
  return { broker, url: `mqtt://127.0.0.1:${broker.listeners[0]!.port}` };
}

describe('listeners', () => {
  it('addBrokerListener takes the reference signature: TLS from a PFX file with its password', async () => {
    broker = new MqttBroker();
    broker.addBrokerListener(
      '127.0.0.1',
      0,
      BrokerProtocol.mbpTLS,
      CertStoreType.cstPFXFile,
      certs.serverPfx,
      certs.pfxPassword,
      '*',
    );
    await broker.startListening();
    const port = broker.listeners[0]!.port;
    expect(broker.listeners[0]).toMatchObject({ protocol: 'tls', isListening: true });
    const client = await pool.connect(`mqtts://127.0.0.1:${port}`, {
      ca: readFileSync(certs.caCert),
      servername: 'localhost',
    });
    expect(client.connected).toBe(true);
  });

  it('addBrokerListener takes a PFX blob (cstPFXBlob)', async () => {
    broker = new MqttBroker();
    broker.addBrokerListener(
      '127.0.0.1',
      0,
      BrokerProtocol.mbpWSS,
      CertStoreType.cstPFXBlob,
      readFileSync(certs.serverPfx),
      certs.pfxPassword,
      '*',
    );
    await broker.startListening();
    const port = broker.listeners[0]!.port;
    const client = await pool.connect(`wss://127.0.0.1:${port}/mqtt`, {
      ca: readFileSync(certs.caCert),
      servername: 'localhost',
    });
    expect(client.connected).toBe(true);
  });

  it('a TLS listener without a certificate is refused at once', () => {
    broker = new MqttBroker();
    expect(() => broker!.addListener({ protocol: 'tls', port: 0 })).toThrow(
      expect.objectContaining({ code: 'APP_INVALID_LISTENER' }),
    );
  });

  it('stopListening keeps connected clients and refuses new ones; listening reflects it', async () => {
    const { broker: b, url } = await startTcp();
    const sub = await pool.connect(url);
    const inbox = new Inbox(sub);
    await sub.subscribeAsync('still/here');
    await b.stopListening();
    expect(b.listening).toBe(false);
    b.publish('still/here', 'yes');
    expect((await inbox.first('still/here')).payload.toString()).toBe('yes');
    await expect(pool.connect(url, { connectTimeout: 1000 })).rejects.toThrow();
  });
});

describe('properties', () => {
  it('connections describe each client as the reference does (ids, addresses, protocol, user, keep-alive)', async () => {
    const { broker: b, url } = await startTcp();
    await pool.connect(url, { clientId: 'viewer', username: 'ann', keepalive: 42 });
    const [connection] = [...b.connections.values()];
    expect(connection).toMatchObject({
      clientId: 'viewer',
      userName: 'ann',
      keepAlive: 42,
      protocol: BrokerProtocol.mbpTCP,
      remoteHost: '127.0.0.1',
      localPort: b.listeners[0]!.port,
    });
    expect(b.connections.get(connection!.connectionId)).toEqual(connection);
  });

  it('sessions list subscriptions with granted QoS, for connected and stored sessions', async () => {
    const { broker: b, url } = await startTcp();
    const client = await pool.connect(url, { clientId: 'keeper', clean: false });
    await client.subscribeAsync({ 'a/#': { qos: 1 }, 'b/+': { qos: 2 } });
    await client.endAsync();
    await waitUntil(
      () => b.sessions.some((s) => s.clientId === 'keeper' && !s.isConnected),
      3000,
      'offline session',
    );
    expect(b.sessions).toEqual([
      {
        clientId: 'keeper',
        subTopicFilters: ['a/#', 'b/+'],
        subGrantedQoS: [1, 2],
        incomingMessages: 0,
        outgoingMessages: 0,
        isConnected: false,
      },
    ]);
  });

  it('messages (retained) can be listed, added, changed and removed', async () => {
    const { broker: b, url } = await startTcp();
    b.messages.set('cfg/a', 'one', 1);
    b.messages.set('cfg/a', 'two', 1);
    expect(b.messages.list().map((m) => [m.topic, Buffer.from(m.payload).toString(), m.qos])).toEqual([
      ['cfg/a', 'two', 1],
    ]);
    const client = await pool.connect(url);
    const inbox = new Inbox(client);
    await client.subscribeAsync('cfg/#', { qos: 1 });
    const got = await inbox.first('cfg/a');
    expect([got.payload.toString(), got.packet.retain]).toEqual(['two', true]);
    expect(b.messages.remove('cfg/a')).toBe(true);
    expect(b.messages.list()).toEqual([]);
  });

  it('defaultIdleTimeout disconnects a client that sent and received nothing for that long', async () => {
    const { broker: b, url } = await startTcp();
    b.defaultIdleTimeout = 1;
    expect(b.defaultIdleTimeout).toBe(1);
    const client = await pool.connect(url, { keepalive: 0 });
    await waitUntil(() => !client.connected, 4000, 'idle disconnect');
  });
});

describe('methods', () => {
  it('disconnect(connectionId) closes that client and publishes its will [MQTT-3.1.2-8]', async () => {
    const { broker: b, url } = await startTcp();
    const watcher = await pool.connect(url);
    const inbox = new Inbox(watcher);
    await watcher.subscribeAsync('wills/#');
    const victim = await pool.connect(url, {
      clientId: 'victim',
      will: { topic: 'wills/victim', payload: Buffer.from('bye'), qos: 0, retain: false },
    });
    const id = [...b.connections.values()].find((c) => c.clientId === 'victim')!.connectionId;
    expect(b.disconnect(id)).toBe(true);
    expect((await inbox.first('wills/victim')).payload.toString()).toBe('bye');
    await waitUntil(() => !victim.connected, 3000, 'victim closed');
  });

  it('saveSession gives the reference JSON and loadSession restores it, queued messages included', async () => {
    const { broker: b, url } = await startTcp();
    const c = await pool.connect(url, { clientId: 'roamer', clean: false });
    await c.subscribeAsync('news', { qos: 1 });
    await c.endAsync();
    await waitUntil(() => b.sessions.some((s) => s.clientId === 'roamer' && !s.isConnected), 3000, 'offline');
    b.publish('news', 'Test', 1);
    const json = b.saveSession('roamer');
    const parsed = JSON.parse(json) as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual([
      'ClientId',
      'Subscriptions',
      'IncomingMessages',
      'OutgoingMessages',
    ]);
    expect(parsed['Subscriptions']).toEqual([{ Topic: 'news', QoS: 1 }]);
    expect(parsed['OutgoingMessages']).toMatchObject([
      { Topic: 'news', Payload: '54657374', QoS: 1, State: 1, PacketId: -1 },
    ]);

    await b.shutdown();
    const { broker: second, url: url2 } = await startTcp((fresh) => fresh.loadSession(json));
    expect(second.sessions.map((s) => s.clientId)).toEqual(['roamer']);
    const back = await pool.connect(
      url2,
      { clientId: 'roamer', clean: false },
      (client) => new Inbox(client),
    );
    expect((await pool.inboxOf(back)!.first('news')).payload.toString()).toBe('Test');
  });

  it('loadSession refuses a client that is connected, and changes nothing', async () => {
    const { broker: b, url } = await startTcp();
    await pool.connect(url, { clientId: 'busy', clean: false });
    const json = b.saveSession('busy');
    expect(() => b.loadSession(json)).toThrow(expect.objectContaining({ code: 'CORE_INVALID_ARGUMENT' }));
  });
});

describe('config settings (the reference syntax)', () => {
  it('reads and sets values; booleans as True/False/1/0/Yes/No in any case', () => {
    broker = new MqttBroker();
    expect(broker.config('TcpNoDelay')).toBe('True');
    expect(broker.config('TcpNoDelay=no')).toBe('False');
    expect(broker.config('tcpnodelay=1')).toBe('True');
    expect(broker.config('ConnectionTimeout=5')).toBe('5');
    expect(broker.core.limits.connectTimeoutMs).toBe(5000);
    expect(broker.config('SSLEnabledProtocols=TLSv1.3')).toBe('TLSv1.3');
    expect(broker.config('BuildInfo')).toMatch(/mqtt-broker/);
  });

  it.each([
    ['NoSuchSetting', 'APP_UNKNOWN_SETTING'],
    ['BuildInfo=x', 'APP_READ_ONLY_SETTING'],
    ['TcpNoDelay=perhaps', 'APP_INVALID_SETTING_VALUE'],
    ['LogLevel=7', 'APP_INVALID_SETTING_VALUE'],
    ['ConnectionTimeout=soon', 'APP_INVALID_SETTING_VALUE'],
    ['SSLEnabledProtocols=SSLv3', 'APP_INVALID_SETTING_VALUE'],
  ])('config(%j) throws %s', (command, code) => {
    broker = new MqttBroker();
    let thrown: unknown;
    try {
      broker.config(command);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(SettingError);
    expect((thrown as SettingError).code).toBe(code);
  });

  it('SSLEnabledProtocols limits the TLS versions a listener accepts', async () => {
    broker = new MqttBroker();
    broker.config('SSLEnabledProtocols=TLSv1.3');
    broker.addListener({
      protocol: 'tls',
      host: '127.0.0.1',
      port: 0,
      certificate: { kind: 'pfx', file: certs.serverPfx, password: certs.pfxPassword },
    });
    await broker.startListening();
    const url = `mqtts://127.0.0.1:${broker.listeners[0]!.port}`;
    const ca = readFileSync(certs.caCert);
    await expect(
      pool.connect(url, {
        ca,
        servername: 'localhost',
        maxVersion: 'TLSv1.2',
        connectTimeout: 2000,
      } as mqtt.IClientOptions),
    ).rejects.toThrow();
    const ok = await pool.connect(url, { ca, servername: 'localhost' });
    expect(ok.connected).toBe(true);
  });
});

describe('decision events', () => {
  it('connectionRequest can refuse by address before anything is read', async () => {
    const { url } = await startTcp((b) =>
      b.on('connectionRequest', (e) => {
        e.accept = false;
      }),
    );
    await expect(pool.connect(url, { connectTimeout: 1000 })).rejects.toThrow();
  });

  it('sessionRequest and connectionRequest listeners added while listening take effect', async () => {
    const { broker: b, url } = await startTcp();
    const before = await pool.connect(url, { clientId: 'before' });
    expect(before.connected).toBe(true);
    const seen: string[] = [];
    b.on('sessionRequest', (e) => {
      seen.push(`${e.clientId}:${e.userName}:${e.password}`);
      if (e.userName === 'bad') {
        e.accept = false;
        e.returnCode = 4;
      }
    });
    await expect(
      pool.connect(url, { clientId: 'refused', username: 'bad', password: 'x', connectTimeout: 1000 }),
    ).rejects.toThrow();
    const good = await pool.connect(url, { clientId: 'good', username: 'ok', password: 'pw' });
    expect(good.connected).toBe(true);
    expect(seen).toEqual(['refused:bad:x', 'good:ok:pw']);
    b.on('connectionRequest', (e) => {
      e.accept = false;
    });
    await expect(pool.connect(url, { clientId: 'late', connectTimeout: 1000 })).rejects.toThrow();
  });

  it('subscribe can lower the granted QoS or refuse with 0x80', async () => {
    const { url } = await startTcp((b) =>
      b.on('subscribe', (e) => {
        if (e.topicFilter === 'low') e.returnCode = 0;
        if (e.topicFilter === 'no') e.returnCode = 0x80;
      }),
    );
    const client = await pool.connect(url);
    const granted = await new Promise<number[]>((resolve, reject) => {
      client.subscribe({ low: { qos: 2 }, yes: { qos: 1 } }, (error, grants) =>
        error ? reject(error) : resolve((grants ?? []).map((g) => g.qos)),
      );
    });
    expect(granted).toEqual([0, 1]);
  });
});

describe('LogLevel', () => {
  it('fires log events up to the LogLevel setting only (0 none, 1 info, 2 verbose, 3 debug)', async () => {
    const { broker: b, url } = await startTcp();
    const levels: number[] = [];
    b.on('log', (e) => {
      levels.push(e.level);
    });
    b.config('LogLevel=0');
    await (await pool.connect(url, { clientId: 'quiet' })).endAsync();
    expect(levels).toEqual([]);
    b.config('LogLevel=3');
    await (await pool.connect(url, { clientId: 'loud' })).endAsync();
    await waitUntil(() => levels.some((l) => l >= 2), 2000, 'verbose log events');
    expect(levels.every((l) => l >= 1 && l <= 3)).toBe(true);
  });
});
