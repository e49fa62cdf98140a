/**
 * Conformance over sockets, transports (6, 7): the byte stream over TCP cut anywhere, MQTT over
 * WebSocket frame by frame with a hand-made WebSocket client, and a stock MQTT.js client with its
 * defaults (no extension needed to interoperate).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ClientPool, Inbox } from './helpers/clients.js';
import { connectPacket, pingreq, publishPacket, RawPool, subscribePacket } from './helpers/raw-mqtt.js';
import { RawWebSocket } from './helpers/raw-ws.js';
import { startTestServer } from './helpers/server.js';

let server: Awaited<ReturnType<typeof startTestServer>>;
const pool = new RawPool();
const mqttjs = new ClientPool();
const sockets: RawWebSocket[] = [];

beforeAll(async () => {
  server = await startTestServer();
});
afterEach(async () => {
  pool.closeAll();
  for (const s of sockets.splice(0)) s.close();
  await mqttjs.closeAll();
});
afterAll(() => server.stop());

async function ws(protocols = 'mqtt'): Promise<RawWebSocket> {
  const s = await RawWebSocket.open(server.wsPort, '/mqtt', protocols);
  sockets.push(s);
  return s;
}

describe('TCP', () => {
  it('[MQTT-7.1.1-1] packets sent one byte at a time over TCP are read as the same stream', async () => {
    const c = await pool.open(server.tcpPort);
    const bytes = Buffer.concat([
      connectPacket({ clientId: 'bytewise' }),
      subscribePacket(1, [['bytes/t', 0]]),
      publishPacket('bytes/t', 'byte by byte'),
      pingreq(),
    ]);
    for (const b of bytes) {
      c.send(Buffer.from([b]));
      await new Promise((r) => setImmediate(r));
    }
    expect((await c.next('connack')).returnCode).toBe(0);
    expect((await c.next('suback')).returnCodes).toEqual([0]);
    expect((await c.next('publish')).payload.toString()).toBe('byte by byte');
    await c.next('pingresp');
  });
});

describe('WebSocket', () => {
  it('[MQTT-6.0.0-4] the server selects the subprotocol "mqtt"', async () => {
    const s = await ws('mqtt');
    expect(s.responseHead).toMatch(/^HTTP\/1\.1 101/);
    expect(s.responseHead).toMatch(/\r\nsec-websocket-protocol: mqtt(\r\n|$)/i);
  });

  it('[MQTT-6.0.0-2] several MQTT packets in one binary frame, and one packet split across frames, are all read', async () => {
    const s = await ws();
    // CONNECT split over three frames.
    const connect = connectPacket({ clientId: 'ws-frames' });
    s.frame(connect.subarray(0, 3));
    s.frame(connect.subarray(3, 9));
    s.frame(connect.subarray(9));
    // SUBSCRIBE, PUBLISH and PINGREQ in one frame.
    s.frame(Buffer.concat([subscribePacket(1, [['wsf/t', 0]]), publishPacket('wsf/t', 'framed'), pingreq()]));
    const data = await s.bytes(4 + 5 + 2 + 2 + 5 + 6 + 2);
    expect(data.subarray(0, 4).toString('hex')).toBe('20020000');
    expect(data.subarray(4, 9).toString('hex')).toBe('9003000100');
    expect(data.includes(Buffer.from('framed'))).toBe(true);
    expect(data.subarray(-2).toString('hex')).toBe('d000');
    // The server itself sends binary frames only.
    expect(s.opcodes.every((op) => op === 2)).toBe(true);
  });

  it('[MQTT-6.0.0-1] a text frame closes the connection', async () => {
    const s = await ws();
    s.frame(connectPacket({ clientId: 'ws-text' }));
    await s.bytes(4);
    s.frame(Buffer.from('c000', 'hex'), 1);
    // The server starts the WebSocket closing handshake (a Close frame, no PINGRESP) and the TCP
    // connection ends once the client answers it.
    await s.expectClosed();
    expect(s.opcodes).toContain(8);
    expect(s.data.subarray(4)).toHaveLength(0);
  });
});

describe('interoperability', () => {
  it('[MQTT-7.0.0-2] a stock MQTT.js client with its defaults (MQTT 3.1.1, no extension) connects, subscribes, publishes and receives over TCP and WebSocket', async () => {
    for (const url of [server.url, server.wsUrl]) {
      const client = await mqttjs.connect(url, { protocolVersion: 4 });
      const inbox = new Inbox(client);
      await client.subscribeAsync('interop/#', { qos: 2 });
      await client.publishAsync('interop/t', 'hello', { qos: 2 });
      expect((await inbox.first('interop/t')).payload.toString()).toBe('hello');
    }
  });
});
