import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type ConnectionRejectedEvent, isTransportError, type Listener } from '../src/index.js';
import { TcpListener, type TcpListenerOptions } from '../src/tcp.js';
import {
  Accepted,
  closedOf,
  connectTcp,
  hasIpv6Loopback,
  portOf,
  Recorder,
  readBytes,
} from './helpers/util.js';

/**
 * The kernel's timer on a TCP socket from /proc/net/tcp (Linux, IPv4): `tr` (0 none, 1 retransmit,
 * 2 keepalive, 4 zero-window probe) and `when`, the clock ticks until it fires; undefined when the
 * socket is not listed (or the file does not exist).
 */
function kernelTimer(localPort: number, remotePort: number): { tr: number; when: number } | undefined {
  if (!existsSync('/proc/net/tcp')) return undefined;
  const hex = (port: number) => port.toString(16).toUpperCase().padStart(4, '0');
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    const [local, remote, , , timer] = fields.slice(1);
    if (local?.endsWith(`:${hex(localPort)}`) && remote?.endsWith(`:${hex(remotePort)}`) && timer) {
      const [tr, when] = timer.split(':');
      return { tr: Number.parseInt(tr ?? '', 16), when: Number.parseInt(when ?? '', 16) };
    }
  }
  return undefined;
}

const listeners: Listener[] = [];
const sockets: net.Socket[] = [];

async function startTcp(
  options: TcpListenerOptions = {},
): Promise<{ listener: TcpListener; accepted: Accepted }> {
  const listener = new TcpListener({ host: '127.0.0.1', port: 0, ...options });
  const accepted = new Accepted(listener);
  await listener.start();
  listeners.push(listener);
  return { listener, accepted };
}

async function client(listener: Listener, host = '127.0.0.1'): Promise<net.Socket> {
  const socket = await connectTcp(portOf(listener), host);
  sockets.push(socket);
  return socket;
}

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const listener of listeners.splice(0)) {
    listener.closeConnections();
    await listener.stop();
  }
});

describe('TcpListener', () => {
  it('names the port it is bound to, again after a restart on another port', async () => {
    const { listener } = await startTcp();
    const first = portOf(listener);
    expect(listener.name).toBe(`tcp://127.0.0.1:${first}`);
    await listener.stop();
    expect(listener.name).toBe('tcp://127.0.0.1:0');
    // Hold the first port so the restart (port 0) binds another one.
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(first, '127.0.0.1', resolve));
    try {
      await listener.start();
      expect(portOf(listener)).not.toBe(first);
      expect(listener.name).toBe(`tcp://127.0.0.1:${portOf(listener)}`);
    } finally {
      holder.close();
    }
  });

  it('moves bytes both ways and reports addresses', async () => {
    const { listener, accepted } = await startTcp();
    expect(listener.name).toBe(`tcp://127.0.0.1:${portOf(listener)}`);
    const socket = await client(listener);
    const connection = await accepted.next();
    expect(connection.protocol).toBe('tcp');
    expect(connection.id).toMatch(/^c\d+$/);
    expect(connection.remoteAddress).toBe('127.0.0.1');
    expect(connection.remotePort).toBe(socket.localPort);
    expect(connection.localPort).toBe(portOf(listener));
    expect(connection.localAddress).toBe('127.0.0.1');
    expect(connection.tls).toBeUndefined();
    expect(listener.connections.has(connection)).toBe(true);
    const recorder = new Recorder(connection, true);
    socket.write('hello ');
    socket.write('world');
    expect((await readBytes(socket, 11)).toString()).toBe('hello world');
    expect((await recorder.receive(11)).toString()).toBe('hello world');
  });

  it('does not lose bytes sent before the handler is attached', async () => {
    const { listener, accepted } = await startTcp();
    const socket = await client(listener);
    socket.write('early bytes');
    const connection = await accepted.next();
    // Give the bytes time to reach the server; none may be dropped while no handler exists.
    await new Promise((resolve) => setTimeout(resolve, 30));
    const recorder = new Recorder(connection);
    expect((await recorder.receive(11)).toString()).toBe('early bytes');
  });

  it('batches the writes of one turn into one chunk', async () => {
    const { listener, accepted } = await startTcp();
    const socket = await client(listener);
    const connection = await accepted.next();
    new Recorder(connection);
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    for (let i = 0; i < 100; i++) expect(connection.write(Buffer.from([i]))).toBe(true);
    expect(connection.bufferedBytes).toBe(100);
    await new Promise<void>((resolve) => {
      const check = () => (Buffer.concat(chunks).length >= 100 ? resolve() : socket.once('data', check));
      check();
    });
    expect(chunks.length).toBe(1);
    expect([...Buffer.concat(chunks)]).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it('runs several listeners at once with unique connection ids', async () => {
    const a = await startTcp();
    const b = await startTcp();
    expect(portOf(a.listener)).not.toBe(portOf(b.listener));
    await client(a.listener);
    await client(b.listener);
    await client(a.listener);
    const ids = [await a.accepted.next(), await b.accepted.next(), await a.accepted.next()].map((c) => c.id);
    expect(new Set(ids).size).toBe(3);
    expect(a.listener.connections.size).toBe(2);
    expect(b.listener.connections.size).toBe(1);
  });

  it('reports the local end a wildcard listener accepted on', async () => {
    const { listener, accepted } = await startTcp({ host: '0.0.0.0' });
    const socket = await client(listener, '127.0.0.1');
    const connection = await accepted.next();
    expect(connection.localAddress).toBe('127.0.0.1');
    expect(connection.localPort).toBe(portOf(listener));
    expect(connection.remotePort).toBe(socket.localPort);
  });

  it('listens on IPv6 ::1', async (ctx) => {
    if (!(await hasIpv6Loopback())) ctx.skip();
    const { listener, accepted } = await startTcp({ host: '::1' });
    expect(listener.address()?.host).toBe('::1');
    expect(listener.name).toBe(`tcp://[::1]:${portOf(listener)}`);
    const socket = await client(listener, '::1');
    const recorder = new Recorder(await accepted.next(), true);
    expect(recorder.connection.remoteAddress).toBe('::1');
    expect(recorder.connection.localAddress).toBe('::1');
    expect(recorder.connection.localPort).toBe(portOf(listener));
    socket.write('v6');
    expect((await readBytes(socket, 2)).toString()).toBe('v6');
  });

  it('rejects start() with TRANSPORT_LISTEN_FAILED when the port is taken', async () => {
    const { listener } = await startTcp();
    const second = new TcpListener({ host: '127.0.0.1', port: portOf(listener) });
    const error = await second.start().catch((e: unknown) => e);
    expect(isTransportError(error, 'TRANSPORT_LISTEN_FAILED')).toBe(true);
    expect((error as Error).message).toContain(`tcp://127.0.0.1:${portOf(listener)}`);
    expect((error as { listener: string }).listener).toBe(`tcp://127.0.0.1:${portOf(listener)}`);
    expect(second.address()).toBeNull();
  });

  it('destroys a connection that sends nothing within connectTimeoutMs', async () => {
    const { listener, accepted } = await startTcp({ connectTimeoutMs: 200 });
    const socket = await client(listener);
    const recorder = new Recorder(await accepted.next());
    const error = await recorder.closed;
    expect(isTransportError(error, 'TRANSPORT_CONNECT_TIMEOUT')).toBe(true);
    await closedOf(socket);
    expect(listener.connections.size).toBe(0);
  });

  it('keeps a connection that sent a byte past connectTimeoutMs', async () => {
    const { listener, accepted } = await startTcp({ connectTimeoutMs: 150 });
    const socket = await client(listener);
    const recorder = new Recorder(await accepted.next(), true);
    socket.write('x');
    await recorder.receive(1);
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(recorder.closeCount).toBe(0);
    socket.write('y');
    expect((await readBytes(socket, 2)).toString()).toBe('xy');
  });

  it('times out each silent connection in deadline order, whatever order they were accepted in', async () => {
    // One timer serves every connection waiting for its first byte: the later-accepted connection
    // of the shorter-timeout listener must still expire first, and one that sent a byte never.
    const slow = await startTcp({ connectTimeoutMs: 900 });
    const fast = await startTcp({ connectTimeoutMs: 300 });
    const order: string[] = [];
    await client(slow.listener);
    const onSlow = new Recorder(await slow.accepted.next());
    void onSlow.closed.then((error) => order.push(`slow:${(error as { code?: string }).code}`));
    await client(fast.listener);
    const onFast = new Recorder(await fast.accepted.next());
    void onFast.closed.then((error) => order.push(`fast:${(error as { code?: string }).code}`));
    const talker = await client(fast.listener);
    talker.write('x');
    const onTalker = new Recorder(await fast.accepted.next(), true);
    await onTalker.receive(1);
    await onSlow.closed;
    expect(order).toEqual(['fast:TRANSPORT_CONNECT_TIMEOUT', 'slow:TRANSPORT_CONNECT_TIMEOUT']);
    expect(onTalker.closeCount).toBe(0);
    talker.write('y');
    expect((await readBytes(talker, 2)).toString()).toBe('xy');
  });

  for (const [label, decide] of [
    ['returns false', () => false],
    [
      'throws',
      () => {
        throw new Error('nope');
      },
    ],
    ['resolves false', async () => false],
    [
      'rejects',
      async () => {
        throw new Error('nope');
      },
    ],
  ] as const) {
    it(`closes at once when onConnectionRequest ${label}`, async () => {
      const rejected: ConnectionRejectedEvent[] = [];
      const requests: string[] = [];
      const { listener, accepted } = await startTcp({
        onConnectionRequest: (request) => {
          requests.push(`${request.protocol}:${request.remoteAddress}`);
          return decide();
        },
        onConnectionRejected: (event) => rejected.push(event),
      });
      const socket = await client(listener);
      await closedOf(socket);
      expect(requests).toEqual(['tcp:127.0.0.1']);
      expect(accepted.count).toBe(0);
      expect(rejected.map((r) => r.error.code)).toEqual(['TRANSPORT_CONNECTION_REFUSED']);
      expect(listener.connections.size).toBe(0);
    });
  }

  it('accepts when onConnectionRequest resolves true', async () => {
    const { listener, accepted } = await startTcp({ onConnectionRequest: async () => true });
    const socket = await client(listener);
    new Recorder(await accepted.next(), true);
    socket.write('ok');
    expect((await readBytes(socket, 2)).toString()).toBe('ok');
  });

  it('times out an onConnectionRequest that never answers', async () => {
    const rejected: ConnectionRejectedEvent[] = [];
    const { listener, accepted } = await startTcp({
      connectTimeoutMs: 100,
      onConnectionRequest: () => new Promise<boolean>(() => {}),
      onConnectionRejected: (event) => rejected.push(event),
    });
    const socket = await client(listener);
    await closedOf(socket);
    expect(rejected.map((r) => r.error.code)).toEqual(['TRANSPORT_CONNECT_TIMEOUT']);
    expect(accepted.count).toBe(0);
  });

  it('refuses connections beyond maxConnections', async () => {
    const rejected: string[] = [];
    const { listener, accepted } = await startTcp({
      maxConnections: 1,
      onConnectionRejected: (event) => rejected.push(event.error.code),
    });
    await client(listener);
    await accepted.next();
    const second = await client(listener);
    await closedOf(second);
    expect(rejected).toEqual(['TRANSPORT_MAX_CONNECTIONS']);
    expect(listener.connections.size).toBe(1);
  });

  it('flushes queued bytes and closes after the peer half-closes', async () => {
    const { listener, accepted } = await startTcp();
    const socket = net.connect({ port: portOf(listener), host: '127.0.0.1', allowHalfOpen: true });
    sockets.push(socket);
    await once(socket, 'connect');
    const connection = await accepted.next();
    const recorder = new Recorder(connection);
    recorder.onData = (bytes) => {
      Recorder.prototype.onData.call(recorder, bytes);
      connection.write(Buffer.from('reply'));
    };
    const received = readBytes(socket, 5);
    socket.end('last words');
    expect((await received).toString()).toBe('reply');
    expect(await recorder.closed).toBeUndefined();
    expect(recorder.bytes.toString()).toBe('last words');
    expect(recorder.closeCount).toBe(1);
    await closedOf(socket);
  });

  it('survives a peer reset and reports onClose once', async () => {
    const { listener, accepted } = await startTcp();
    const socket = await client(listener);
    const recorder = new Recorder(await accepted.next());
    socket.write('x');
    await recorder.receive(1);
    socket.resetAndDestroy();
    const error = await recorder.closed;
    // Linux reports ECONNRESET; a reset that arrives while idle can also look like a clean close.
    if (error !== undefined) expect(isTransportError(error, 'TRANSPORT_SOCKET_ERROR')).toBe(true);
    expect(recorder.closeCount).toBe(1);
    expect(listener.connections.size).toBe(0);
    expect(recorder.connection.write(Buffer.from('late'))).toBe(false);
    expect(recorder.connection.isClosed).toBe(true);
  });

  it('applies backpressure against a peer that does not read, then drains', async () => {
    const { listener, accepted } = await startTcp({ highWaterMarkBytes: 64 * 1024 });
    const socket = await client(listener);
    socket.pause();
    const connection = await accepted.next();
    const recorder = new Recorder(connection);
    const chunk = Buffer.alloc(16 * 1024, 7);
    let written = 0;
    // Write until write() says stop, turn after turn, until the kernel buffers are full too and the
    // transport's own buffer stays above the high-water mark after a flush.
    for (let turn = 0; turn < 1000; turn++) {
      while (connection.write(chunk)) written += chunk.length;
      written += chunk.length;
      await new Promise((resolve) => setImmediate(resolve));
      if (connection.bufferedBytes > 64 * 1024) break;
    }
    expect(connection.bufferedBytes).toBeGreaterThan(64 * 1024);
    expect(connection.write(chunk)).toBe(false);
    written += chunk.length;
    const drainsBefore = recorder.drains;
    const all = readBytes(socket, written);
    socket.resume();
    await recorder.until(() => recorder.drains > drainsBefore);
    expect(connection.bufferedBytes).toBeLessThanOrEqual(32 * 1024);
    expect((await all).length).toBe(written);
  });

  it('end() sends what is queued, then closes', async () => {
    const { listener, accepted } = await startTcp();
    const socket = await client(listener);
    const connection = await accepted.next();
    const recorder = new Recorder(connection);
    connection.write(Buffer.from('goodbye'));
    connection.end();
    expect(connection.isClosed).toBe(true);
    expect(connection.write(Buffer.from('dropped'))).toBe(false);
    expect((await readBytes(socket, 7)).toString()).toBe('goodbye');
    await once(socket, 'end');
    socket.end();
    expect(await recorder.closed).toBeUndefined();
  });

  it('destroy(error) drops the queue and hands the error to onClose', async () => {
    const { listener, accepted } = await startTcp();
    const socket = await client(listener);
    const connection = await accepted.next();
    const recorder = new Recorder(connection);
    connection.write(Buffer.from('never sent'));
    const reason = new Error('kicked');
    connection.destroy(reason);
    expect(await recorder.closed).toBe(reason);
    let received = 0;
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    await closedOf(socket);
    expect(received).toBe(0);
  });

  it('lingerSeconds 0 resets the connection on destroy()', async () => {
    const { listener, accepted } = await startTcp({ lingerSeconds: 0 });
    const socket = await client(listener);
    const errors: string[] = [];
    socket.on('error', (error: NodeJS.ErrnoException) => errors.push(error.code ?? ''));
    const connection = await accepted.next();
    new Recorder(connection);
    connection.destroy();
    await closedOf(socket);
    expect(errors).toEqual(['ECONNRESET']);
  });

  it('delivers onClose on the next tick when the handler comes after the close', async () => {
    const { listener, accepted } = await startTcp();
    const socket = await client(listener);
    const connection = await accepted.next();
    connection.destroy();
    await closedOf(socket);
    await new Promise<void>((resolve) => {
      const wait = () => (listener.connections.size === 0 ? resolve() : setImmediate(wait));
      wait();
    });
    const recorder = new Recorder(connection);
    expect(recorder.closeCount).toBe(0);
    await recorder.closed;
    expect(recorder.closeCount).toBe(1);
  });

  it('a throwing onData closes only its own connection', async () => {
    const { listener, accepted } = await startTcp();
    const bad = await client(listener);
    const good = await client(listener);
    const badConnection = await accepted.next();
    const goodRecorder = new Recorder(await accepted.next(), true);
    const badRecorder = new Recorder(badConnection);
    badRecorder.onData = () => {
      throw new Error('engine bug');
    };
    bad.write('boom');
    expect((await badRecorder.closed)?.message).toBe('engine bug');
    good.write('fine');
    expect((await readBytes(good, 4)).toString()).toBe('fine');
    expect(goodRecorder.closeCount).toBe(0);
  });

  it('pause() stops reading and resume() restarts it', async () => {
    const { listener, accepted } = await startTcp();
    const socket = await client(listener);
    const connection = await accepted.next();
    connection.pause();
    const recorder = new Recorder(connection);
    socket.write('held');
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(recorder.bytes.length).toBe(0);
    connection.resume();
    expect((await recorder.receive(4)).toString()).toBe('held');
  });

  it('stop() refuses new connections but keeps existing ones; closeConnections() closes them', async () => {
    const { listener, accepted } = await startTcp();
    const port = portOf(listener);
    const socket = await client(listener);
    const recorder = new Recorder(await accepted.next(), true);
    await listener.stop();
    expect(listener.address()).toBeNull();
    const refused = net.connect({ port, host: '127.0.0.1' });
    const [error] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
    expect(error.code).toBe('ECONNREFUSED');
    socket.write('still here');
    expect((await readBytes(socket, 10)).toString()).toBe('still here');
    listener.closeConnections();
    await recorder.closed;
    await closedOf(socket);
    expect(listener.connections.size).toBe(0);
  });

  it('applies keepAlive to accepted sockets', async () => {
    // The kernel setting is not observable portably: check the call, and on Linux the socket's
    // keepalive timer in /proc/net/tcp (armed with the initial delay; without keepalive there is none).
    const spy = vi.spyOn(net.Socket.prototype, 'setKeepAlive');
    try {
      const { listener, accepted } = await startTcp({ keepAlive: { enabled: true, initialDelayMs: 3000 } });
      const socket = await client(listener);
      new Recorder(await accepted.next(), true);
      socket.write('k');
      expect((await readBytes(socket, 1)).toString()).toBe('k');
      const calls = spy.mock.calls.filter(
        (_, i) => (spy.mock.contexts[i] as net.Socket).remotePort === socket.localPort,
      );
      expect(calls).toEqual([[true, 3000]]);
      const timer = kernelTimer(portOf(listener), socket.localPort!);
      if (timer !== undefined) {
        expect(timer.tr).toBe(2);
        // Clock ticks (USER_HZ, 100 on Linux; at most 1000): far below the OS default of 7200 s.
        expect(timer.when).toBeGreaterThan(0);
        expect(timer.when).toBeLessThanOrEqual(3000);
      }
    } finally {
      spy.mockRestore();
    }
  });

  it('leaves keep-alive to the OS when keepAlive is not given', async () => {
    const spy = vi.spyOn(net.Socket.prototype, 'setKeepAlive');
    try {
      const { listener, accepted } = await startTcp();
      const socket = await client(listener);
      new Recorder(await accepted.next(), true);
      socket.write('k');
      await readBytes(socket, 1);
      expect(spy).not.toHaveBeenCalled();
      const timer = kernelTimer(portOf(listener), socket.localPort!);
      if (timer !== undefined) expect(timer.tr).not.toBe(2);
    } finally {
      spy.mockRestore();
    }
  });

  it('refuses a second start()', async () => {
    const { listener } = await startTcp();
    const error = await listener.start().catch((e: unknown) => e);
    expect(isTransportError(error, 'TRANSPORT_ALREADY_STARTED')).toBe(true);
  });
});
