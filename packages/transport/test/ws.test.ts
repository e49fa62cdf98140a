import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { type ConnectionRejectedEvent, isTransportError, type Listener } from '../src/index.js';
import { WsListener, type WsListenerOptions, WssListener } from '../src/ws.js';
import { createTestCerts, type TestCerts } from './helpers/certs.js';
import { Accepted, hasIpv6Loopback, portOf, Recorder } from './helpers/util.js';

const listeners: Listener[] = [];
const clients: WebSocket[] = [];
let certs: TestCerts;

beforeAll(() => {
  certs = createTestCerts();
});
afterAll(() => certs.cleanup());
afterEach(async () => {
  for (const ws of clients.splice(0)) ws.terminate();
  for (const listener of listeners.splice(0)) {
    listener.closeConnections();
    await listener.stop();
  }
});

async function startWs(
  options: WsListenerOptions = {},
): Promise<{ listener: WsListener; accepted: Accepted; rejected: ConnectionRejectedEvent[] }> {
  const rejected: ConnectionRejectedEvent[] = [];
  const listener = new WsListener({
    host: '127.0.0.1',
    port: 0,
    onConnectionRejected: (event) => rejected.push(event),
    ...options,
  });
  const accepted = new Accepted(listener);
  await listener.start();
  listeners.push(listener);
  return { listener, accepted, rejected };
}

/** Opens a client; resolves with it once open, or with the HTTP status / error that refused it. */
async function open(
  url: string,
  protocols?: string | string[],
  options: WebSocket.ClientOptions = {},
): Promise<{ ws: WebSocket; status?: number; error?: Error }> {
  const ws = new WebSocket(url, protocols, options);
  clients.push(ws);
  return new Promise((resolve) => {
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_request, response) => {
      resolve({ ws, status: response.statusCode ?? 0 });
      response.resume();
      ws.terminate();
    });
    ws.once('error', (error) => resolve({ ws, error }));
  });
}

/** Collects binary messages a client receives. */
function messages(ws: WebSocket): Buffer[] {
  const list: Buffer[] = [];
  ws.on('message', (data: Buffer) => list.push(data));
  return list;
}

async function until(predicate: () => boolean): Promise<void> {
  while (!predicate()) await new Promise((resolve) => setTimeout(resolve, 2));
}

const urlOf = (listener: Listener, path = '/mqtt', scheme = 'ws', host = '127.0.0.1') =>
  `${scheme}://${host.includes(':') ? `[${host}]` : host}:${portOf(listener)}${path}`;

describe('WsListener', () => {
  for (const protocols of ['mqtt', 'mqttv3.1', undefined, ['foo', 'mqttv3.1']] as const) {
    it(`accepts a client offering ${JSON.stringify(protocols) ?? 'no subprotocol'}`, async () => {
      const { listener, accepted } = await startWs();
      const { ws } = await open(urlOf(listener), protocols as string | string[] | undefined);
      expect(ws.readyState).toBe(WebSocket.OPEN);
      const expected = protocols === undefined ? '' : Array.isArray(protocols) ? 'mqttv3.1' : protocols;
      expect(ws.protocol).toBe(expected);
      const connection = await accepted.next();
      expect(connection.protocol).toBe('ws');
      expect(connection.remoteAddress).toBe('127.0.0.1');
      const recorder = new Recorder(connection, true);
      const got = messages(ws);
      ws.send(Buffer.from([0x10, 0x02, 0x00, 0x00]));
      await recorder.receive(4);
      await until(() => got.length > 0);
      expect([...got[0]!]).toEqual([0x10, 0x02, 0x00, 0x00]);
    });
  }

  it('refuses a client offering only unknown subprotocols', async () => {
    const { listener, accepted, rejected } = await startWs();
    const { status } = await open(urlOf(listener), ['chat', 'soap']);
    expect(status).toBe(400);
    expect(accepted.count).toBe(0);
    expect(rejected.map((r) => r.error.code)).toEqual(['TRANSPORT_WS_UPGRADE_REFUSED']);
  });

  it('refuses a wrong path with 404', async () => {
    const { listener, accepted } = await startWs();
    const { status } = await open(urlOf(listener, '/other'), 'mqtt');
    expect(status).toBe(404);
    expect(accepted.count).toBe(0);
    const custom = await startWs({ path: '/custom' });
    expect((await open(urlOf(custom.listener, '/custom?x=1'), 'mqtt')).ws.readyState).toBe(WebSocket.OPEN);
  });

  it('answers a plain HTTP request on the path with 426 and elsewhere with 404', async () => {
    const { listener } = await startWs();
    const get = (path: string) =>
      new Promise<number>((resolve, reject) => {
        http
          .get(`http://127.0.0.1:${portOf(listener)}${path}`, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          })
          .on('error', reject);
      });
    expect(await get('/mqtt')).toBe(426);
    expect(await get('/')).toBe(404);
  });

  it('delivers a byte stream split across many frames, and several packets in one frame, intact and in order', async () => {
    const { listener, accepted } = await startWs();
    const { ws } = await open(urlOf(listener), 'mqtt');
    const recorder = new Recorder(await accepted.next());
    const stream = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 251));
    for (let offset = 0; offset < 1000; offset += 7)
      ws.send(stream.subarray(offset, Math.min(offset + 7, 1000)));
    ws.send(stream.subarray(1000));
    const received = await recorder.receive(3000);
    expect(received.equals(stream)).toBe(true);
    expect(recorder.chunks.length).toBe(Math.ceil(1000 / 7) + 1);
  });

  it('sends the writes of one turn as one frame', async () => {
    const { listener, accepted } = await startWs();
    const { ws } = await open(urlOf(listener), 'mqtt');
    const connection = await accepted.next();
    new Recorder(connection);
    const got = messages(ws);
    for (let i = 0; i < 50; i++) connection.write(Buffer.from([i]));
    await until(() => got.length > 0);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(got.length).toBe(1);
    expect([...got[0]!]).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('closes on a text frame with TRANSPORT_WS_TEXT_FRAME', async () => {
    const { listener, accepted } = await startWs();
    const { ws } = await open(urlOf(listener), 'mqtt');
    const recorder = new Recorder(await accepted.next());
    const closed = once(ws, 'close');
    ws.send('hello');
    const [code] = (await closed) as [number];
    expect(code).toBe(1000);
    expect(isTransportError(await recorder.closed, 'TRANSPORT_WS_TEXT_FRAME')).toBe(true);
  });

  it('enforces allowedOrigins with 403, and lets clients without Origin through', async () => {
    const { listener, accepted } = await startWs({ allowedOrigins: ['https://good.example'] });
    expect((await open(urlOf(listener), 'mqtt', { origin: 'https://evil.example' })).status).toBe(403);
    expect((await open(urlOf(listener), 'mqtt', { origin: 'https://good.example' })).ws.readyState).toBe(
      WebSocket.OPEN,
    );
    expect((await open(urlOf(listener), 'mqtt')).ws.readyState).toBe(WebSocket.OPEN);
    expect(accepted.count).toBe(2);
  });

  it('attaches to a user-owned HTTP server without binding or closing it', async () => {
    const server = http.createServer((_req, res) => res.end('user page'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const listener = new WsListener({ server });
      const accepted = new Accepted(listener);
      expect(listener.address()).toBeNull();
      await listener.start();
      listeners.push(listener);
      expect(listener.address()?.port).toBe((server.address() as { port: number }).port);
      const { ws } = await open(urlOf(listener), 'mqtt');
      const connection = await accepted.next();
      expect(connection.protocol).toBe('ws');
      const recorder = new Recorder(connection, true);
      const got = messages(ws);
      ws.send(Buffer.from('abc'));
      await recorder.receive(3);
      await until(() => got.length > 0);
      expect(got[0]!.toString()).toBe('abc');
      expect((await open(urlOf(listener, '/nope'), 'mqtt')).status).toBe(404);
      const port = portOf(listener);
      await listener.stop();
      expect(listener.address()).toBeNull();
      // stop() detaches: existing connections stay, the user's server keeps serving requests.
      expect(listener.connections.size).toBe(1);
      const body = await new Promise<string>((resolve) => {
        http.get(`http://127.0.0.1:${port}/`, (res) => {
          let text = '';
          res.on('data', (d) => {
            text += d;
          });
          res.on('end', () => resolve(text));
        });
      });
      expect(body).toBe('user page');
      expect(server.listening).toBe(true);
      listener.closeConnections();
      await recorder.closed;
    } finally {
      for (const ws of clients.splice(0)) ws.terminate();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('applies onConnectionRequest and connectTimeoutMs', async () => {
    const refused = await startWs({ onConnectionRequest: () => false });
    const result = await open(urlOf(refused.listener), 'mqtt');
    expect(result.error ?? result.status).toBeDefined();
    expect(refused.accepted.count).toBe(0);
    expect(refused.rejected.map((r) => r.error.code)).toEqual(['TRANSPORT_CONNECTION_REFUSED']);

    const timed = await startWs({ connectTimeoutMs: 200 });
    const { ws } = await open(urlOf(timed.listener), 'mqtt');
    const recorder = new Recorder(await timed.accepted.next());
    expect(isTransportError(await recorder.closed, 'TRANSPORT_CONNECT_TIMEOUT')).toBe(true);
    if (ws.readyState !== WebSocket.CLOSED) await once(ws, 'close');
  });

  it('applies backpressure and drains', async () => {
    const { listener, accepted } = await startWs({ highWaterMarkBytes: 64 * 1024 });
    const { ws } = await open(urlOf(listener), 'mqtt');
    const connection = await accepted.next();
    const recorder = new Recorder(connection);
    const received = messages(ws);
    (ws as unknown as { _socket: import('node:net').Socket })._socket.pause();
    const chunk = Buffer.alloc(32 * 1024, 1);
    let written = 0;
    for (let turn = 0; turn < 1000; turn++) {
      while (connection.write(chunk)) written += chunk.length;
      written += chunk.length;
      await new Promise((resolve) => setImmediate(resolve));
      if (connection.bufferedBytes > 64 * 1024) break;
    }
    expect(connection.bufferedBytes).toBeGreaterThan(64 * 1024);
    const before = recorder.drains;
    (ws as unknown as { _socket: import('node:net').Socket })._socket.resume();
    await recorder.until(() => recorder.drains > before);
    await until(() => received.reduce((n, b) => n + b.length, 0) === written);
  });

  it('listens on IPv6 ::1', async (ctx) => {
    if (!(await hasIpv6Loopback())) ctx.skip();
    const { listener, accepted } = await startWs({ host: '::1' });
    const { ws } = await open(urlOf(listener, '/mqtt', 'ws', '::1'), 'mqtt');
    expect(ws.readyState).toBe(WebSocket.OPEN);
    expect((await accepted.next()).remoteAddress).toBe('::1');
  });

  it('client close reaches onClose without error; end() closes the WebSocket', async () => {
    const { listener, accepted } = await startWs();
    const first = await open(urlOf(listener), 'mqtt');
    const recorder = new Recorder(await accepted.next());
    first.ws.close(1000);
    expect(await recorder.closed).toBeUndefined();
    expect(listener.connections.size).toBe(0);
    const second = await open(urlOf(listener), 'mqtt');
    const connection = await accepted.next();
    const recorder2 = new Recorder(connection);
    const got = messages(second.ws);
    connection.write(Buffer.from('bye'));
    connection.end();
    await once(second.ws, 'close');
    expect(got.map((b) => b.toString())).toEqual(['bye']);
    expect(await recorder2.closed).toBeUndefined();
  });
});

describe('WsListener limits and socket options', () => {
  it('refuses connections beyond maxConnections on its own port, and frees the slot on close', async () => {
    const { listener, accepted, rejected } = await startWs({ maxConnections: 1 });
    const first = await open(urlOf(listener), 'mqtt');
    expect(first.ws.readyState).toBe(WebSocket.OPEN);
    const recorder = new Recorder(await accepted.next());
    // Closed on arrival, before any HTTP: the client sees the socket go away.
    const second = await open(urlOf(listener), 'mqtt');
    expect(second.ws.readyState).not.toBe(WebSocket.OPEN);
    expect(second.error).toBeDefined();
    expect(accepted.count).toBe(1);
    expect(rejected.map((r) => r.error.code)).toEqual(['TRANSPORT_MAX_CONNECTIONS']);
    expect(listener.connections.size).toBe(1);
    first.ws.close(1000);
    await recorder.closed;
    expect(listener.connections.size).toBe(0);
    expect((await open(urlOf(listener), 'mqtt')).ws.readyState).toBe(WebSocket.OPEN);
    expect(accepted.count).toBe(2);
  });

  it('refuses upgrades beyond maxConnections on a user-owned server with 503', async () => {
    const server = http.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const rejected: ConnectionRejectedEvent[] = [];
      const listener = new WsListener({
        server,
        maxConnections: 1,
        onConnectionRejected: (event) => rejected.push(event),
      });
      const accepted = new Accepted(listener);
      await listener.start();
      listeners.push(listener);
      expect((await open(urlOf(listener), 'mqtt')).ws.readyState).toBe(WebSocket.OPEN);
      await accepted.next();
      expect((await open(urlOf(listener), 'mqtt')).status).toBe(503);
      expect(accepted.count).toBe(1);
      expect(rejected.map((r) => r.error.code)).toEqual(['TRANSPORT_MAX_CONNECTIONS']);
    } finally {
      for (const ws of clients.splice(0)) ws.terminate();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('applies keepAlive to the sockets it accepts', async () => {
    const spy = vi.spyOn(net.Socket.prototype, 'setKeepAlive');
    try {
      const { listener, accepted } = await startWs({ keepAlive: { enabled: true, initialDelayMs: 2000 } });
      const { ws } = await open(urlOf(listener), 'mqtt');
      const connection = await accepted.next();
      const local = (ws as unknown as { _socket: net.Socket })._socket.localPort;
      const calls = spy.mock.calls.filter(
        (_, i) => (spy.mock.contexts[i] as net.Socket).remotePort === local,
      );
      expect(calls).toEqual([[true, 2000]]);
      expect(connection.remotePort).toBe(local);
    } finally {
      spy.mockRestore();
    }
  });
});

describe('WsListener on a user-owned https server', () => {
  // The user's server does the TLS handshake before any HTTP request exists, so WsListener has no TLS
  // options: no certificate, no clientCA, no requireClientCertificate and no onClientCertificate (the
  // type does not take them; given from JavaScript they are ignored). The client certificate policy is
  // the server's (requestCert, rejectUnauthorized, ca); what was negotiated is on `connection.tls`.
  async function httpsServer(options: https.ServerOptions): Promise<https.Server> {
    const server = https.createServer({
      cert: readFileSync(certs.serverCert),
      key: readFileSync(certs.serverKey),
      ca: certs.caPem,
      ...options,
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return server;
  }

  async function closeServer(server: https.Server): Promise<void> {
    for (const ws of clients.splice(0)) ws.terminate();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }

  const clientCert = () => ({ cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) });
  const intruderCert = () => ({
    cert: readFileSync(certs.otherClientCert),
    key: readFileSync(certs.otherClientKey),
  });

  it('does not call onClientCertificate; connection.tls carries the verdict of the server', async () => {
    const server = await httpsServer({ requestCert: true, rejectUnauthorized: false });
    try {
      const onClientCertificate = vi.fn(() => false);
      const rejected: ConnectionRejectedEvent[] = [];
      // From JavaScript (the type has no such option): ignored.
      const jsOptions = {
        server,
        onClientCertificate,
        onConnectionRejected: (e: ConnectionRejectedEvent) => rejected.push(e),
      };
      const listener = new WsListener(jsOptions);
      expect(listener.protocol).toBe('wss');
      const accepted = new Accepted(listener);
      await listener.start();
      listeners.push(listener);
      const url = urlOf(listener, '/mqtt', 'wss');

      const trusted = await open(url, 'mqtt', { ca: certs.caPem, ...clientCert() });
      expect(trusted.ws.readyState).toBe(WebSocket.OPEN);
      const good = await accepted.next();
      expect(good.protocol).toBe('wss');
      expect(good.tls?.isPeerAuthorized).toBe(true);
      expect(good.tls?.authorizationError).toBeNull();
      expect(good.tls?.peerCertificate?.subject).toContain('CN=client-1');

      // Another CA's certificate passes the server (rejectUnauthorized: false) and becomes a Connection.
      const intruder = await open(url, 'mqtt', { ca: certs.caPem, ...intruderCert() });
      expect(intruder.ws.readyState).toBe(WebSocket.OPEN);
      const bad = await accepted.next();
      expect(bad.tls?.isPeerAuthorized).toBe(false);
      expect(bad.tls?.authorizationError).toEqual(expect.any(String));
      expect(bad.tls?.peerCertificate?.subject).toContain('CN=intruder');

      const anonymous = await open(url, 'mqtt', { ca: certs.caPem });
      expect(anonymous.ws.readyState).toBe(WebSocket.OPEN);
      const none = await accepted.next();
      expect(none.tls?.isPeerAuthorized).toBe(false);
      expect(none.tls?.authorizationError).toBe('NO_PEER_CERTIFICATE');
      expect(none.tls?.peerCertificate).toBeNull();

      expect(onClientCertificate).not.toHaveBeenCalled();
      expect(rejected).toEqual([]);

      // Refusing is then the application's: destroy the Connection in onConnection.
      const recorder = new Recorder(bad);
      const closed = once(intruder.ws, 'close');
      bad.destroy(new Error('certificate not trusted'));
      expect((await recorder.closed)?.message).toBe('certificate not trusted');
      await closed;
    } finally {
      await closeServer(server);
    }
  });

  it('never sees a client the server refused in the handshake (rejectUnauthorized)', async () => {
    const server = await httpsServer({ requestCert: true, rejectUnauthorized: true });
    try {
      const rejected: ConnectionRejectedEvent[] = [];
      const listener = new WsListener({ server, onConnectionRejected: (e) => rejected.push(e) });
      const accepted = new Accepted(listener);
      await listener.start();
      listeners.push(listener);
      const url = urlOf(listener, '/mqtt', 'wss');
      const intruder = await open(url, 'mqtt', { ca: certs.caPem, ...intruderCert() });
      expect(intruder.ws.readyState).not.toBe(WebSocket.OPEN);
      const trusted = await open(url, 'mqtt', { ca: certs.caPem, ...clientCert() });
      expect(trusted.ws.readyState).toBe(WebSocket.OPEN);
      expect((await accepted.next()).tls?.isPeerAuthorized).toBe(true);
      expect(accepted.count).toBe(1);
      expect(rejected).toEqual([]);
    } finally {
      await closeServer(server);
    }
  });
});

describe('WssListener', () => {
  it('serves wss with the CA, and requires client certificates when asked', async () => {
    const listener = new WssListener({
      host: '127.0.0.1',
      port: 0,
      certificate: { kind: 'pem', certFile: certs.serverCert, keyFile: certs.serverKey },
    });
    const accepted = new Accepted(listener);
    await listener.start();
    listeners.push(listener);
    expect(listener.name).toMatch(/^wss:\/\/127\.0\.0\.1:\d+$/);
    const { ws } = await open(urlOf(listener, '/mqtt', 'wss'), 'mqtt', { ca: certs.caPem });
    expect(ws.readyState).toBe(WebSocket.OPEN);
    const connection = await accepted.next();
    expect(connection.protocol).toBe('wss');
    expect(connection.tls?.protocol).toBe('TLSv1.3');
    expect(connection.remoteAddress).toBe('127.0.0.1');
    const recorder = new Recorder(connection, true);
    const got = messages(ws);
    ws.send(Buffer.from('secure'));
    await recorder.receive(6);
    await until(() => got.length > 0);
    expect(got[0]!.toString()).toBe('secure');

    const strict = new WssListener({
      host: '127.0.0.1',
      port: 0,
      certificate: { kind: 'pfx', file: certs.serverPfx, password: certs.pfxPassword },
      requireClientCertificate: true,
      clientCA: [{ file: certs.caCert }],
    });
    const strictAccepted = new Accepted(strict);
    await strict.start();
    listeners.push(strict);
    const refused = await open(urlOf(strict, '/mqtt', 'wss'), 'mqtt', { ca: certs.caPem });
    expect(refused.ws.readyState).not.toBe(WebSocket.OPEN);
    const { readFileSync } = await import('node:fs');
    const ok = await open(urlOf(strict, '/mqtt', 'wss'), 'mqtt', {
      ca: certs.caPem,
      cert: readFileSync(certs.clientCert),
      key: readFileSync(certs.clientKey),
    });
    expect(ok.ws.readyState).toBe(WebSocket.OPEN);
    const strictConnection = await strictAccepted.next();
    expect(strictConnection.tls?.isPeerAuthorized).toBe(true);
    expect(strictAccepted.count).toBe(1);
  });
});
