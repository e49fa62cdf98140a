import { createPrivateKey } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type ConnectionRejectedEvent,
  isTransportError,
  type Listener,
  type TlsStatusEvent,
} from '../src/index.js';
import { TlsListener, type TlsListenerOptions } from '../src/tls.js';
import { createTestCerts, type TestCerts } from './helpers/certs.js';
import { Accepted, portOf, Recorder, readBytes } from './helpers/util.js';

let certs: TestCerts;
const listeners: Listener[] = [];
const sockets: tls.TLSSocket[] = [];

beforeAll(() => {
  certs = createTestCerts();
});
afterAll(() => certs.cleanup());
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const listener of listeners.splice(0)) {
    listener.closeConnections();
    await listener.stop();
  }
});

function pem(): TlsListenerOptions['certificate'] {
  return { kind: 'pem', certFile: certs.serverCert, keyFile: certs.serverKey };
}

async function startTls(
  options: Partial<TlsListenerOptions> = {},
): Promise<{ listener: TlsListener; accepted: Accepted; rejected: ConnectionRejectedEvent[] }> {
  const rejected: ConnectionRejectedEvent[] = [];
  const listener = new TlsListener({
    host: '127.0.0.1',
    port: 0,
    certificate: pem(),
    connectTimeoutMs: 2000,
    onConnectionRejected: (event) => rejected.push(event),
    ...options,
  });
  const accepted = new Accepted(listener);
  await listener.start();
  listeners.push(listener);
  return { listener, accepted, rejected };
}

/** Connects a TLS client; resolves once the handshake finished (or the socket failed/closed). */
async function connectTls(
  listener: Listener,
  options: tls.ConnectionOptions = {},
): Promise<{ socket: tls.TLSSocket; error: Error | undefined }> {
  const socket = tls.connect({ port: portOf(listener), host: '127.0.0.1', ca: certs.caPem, ...options });
  sockets.push(socket);
  let error: Error | undefined;
  socket.on('error', (e) => {
    error ??= e;
  });
  await new Promise<void>((resolve) => {
    socket.once('secureConnect', resolve);
    socket.once('close', () => resolve());
  });
  return { socket, error };
}

const clientCert = () => ({ cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) });
const otherClientCert = () => ({
  cert: readFileSync(certs.otherClientCert),
  key: readFileSync(certs.otherClientKey),
});

/** Resolves once a refused client's socket is closed; over TLS 1.3 the handshake itself succeeds first. */
async function expectRefused(socket: tls.TLSSocket): Promise<void> {
  if (!socket.closed) await once(socket, 'close');
}

describe('TlsListener', () => {
  it('serves TLS with a PEM certificate and reports what was negotiated', async () => {
    const status: TlsStatusEvent[] = [];
    const { listener, accepted } = await startTls({ onTlsStatus: (event) => status.push(event) });
    expect(listener.name).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
    const { socket, error } = await connectTls(listener);
    expect(error).toBeUndefined();
    const connection = await accepted.next();
    expect(connection.protocol).toBe('tls');
    expect(connection.tls?.protocol).toBe('TLSv1.3');
    expect(connection.tls?.cipher).toMatch(/^TLS_/);
    expect(connection.tls?.isPeerAuthorized).toBe(false);
    expect(connection.tls?.peerCertificate).toBeNull();
    expect(connection.remoteAddress).toBe('127.0.0.1');
    expect(connection.remotePort).toBe(socket.localPort);
    new Recorder(connection, true);
    socket.write('secret bytes');
    expect((await readBytes(socket, 12)).toString()).toBe('secret bytes');
    expect(status.map((s) => s.message)).toContain('TLS handshake started');
    const negotiated = status.find((s) => s.connectionId === connection.id);
    expect(negotiated?.message).toMatch(/TLSv1\.3/);
  });

  it('accepts a client certificate from the trusted CA when one is required', async () => {
    const { listener, accepted } = await startTls({
      requireClientCertificate: true,
      clientCA: [{ file: certs.caCert }],
    });
    const { socket, error } = await connectTls(listener, clientCert());
    expect(error).toBeUndefined();
    const connection = await accepted.next();
    expect(connection.tls?.isPeerAuthorized).toBe(true);
    expect(connection.tls?.authorizationError).toBeNull();
    expect(connection.tls?.peerCertificate?.subject).toContain('CN=client-1');
    expect(connection.tls?.peerCertificate?.encoded).toBeInstanceOf(Uint8Array);
    expect(connection.tls?.peerCertificate?.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    new Recorder(connection, true);
    socket.write('authorized');
    expect((await readBytes(socket, 10)).toString()).toBe('authorized');
  });

  it('refuses a client certificate from another CA, and a missing one', async () => {
    const { listener, accepted, rejected } = await startTls({
      requireClientCertificate: true,
      clientCA: [certs.caPem],
    });
    const other = await connectTls(listener, otherClientCert());
    await expectRefused(other.socket);
    const none = await connectTls(listener);
    await expectRefused(none.socket);
    expect(accepted.count).toBe(0);
    expect(rejected.map((r) => r.error.code)).toEqual([
      'TRANSPORT_CLIENT_CERT_REFUSED',
      'TRANSPORT_CLIENT_CERT_REFUSED',
    ]);
    expect(listener.connections.size).toBe(0);
  });

  it('lets onClientCertificate accept a certificate that failed verification', async () => {
    const seen: Array<{ subject: string | undefined; isAuthorized: boolean; error: string | null }> = [];
    const { listener, accepted } = await startTls({
      requireClientCertificate: true,
      clientCA: [certs.caPem],
      onClientCertificate: async (info) => {
        seen.push({
          subject: info.certificate?.subject,
          isAuthorized: info.isAuthorized,
          error: info.authorizationError,
        });
        return true;
      },
    });
    const { socket } = await connectTls(listener, otherClientCert());
    const connection = await accepted.next();
    expect(seen).toEqual([{ subject: 'CN=intruder', isAuthorized: false, error: expect.any(String) }]);
    expect(connection.tls?.isPeerAuthorized).toBe(false);
    new Recorder(connection, true);
    socket.write('let in');
    expect((await readBytes(socket, 6)).toString()).toBe('let in');
  });

  it('lets onClientCertificate refuse a certificate that verified', async () => {
    const { listener, accepted, rejected } = await startTls({
      requireClientCertificate: true,
      clientCA: [certs.caPem],
      onClientCertificate: (info) => {
        expect(info.isAuthorized).toBe(true);
        return false;
      },
    });
    const { socket } = await connectTls(listener, clientCert());
    await expectRefused(socket);
    expect(accepted.count).toBe(0);
    expect(rejected.map((r) => r.error.code)).toEqual(['TRANSPORT_CLIENT_CERT_REFUSED']);
  });

  it('loads a PFX file with its password, and a PFX blob', async () => {
    for (const certificate of [
      { kind: 'pfx' as const, file: certs.serverPfx, password: certs.pfxPassword },
      {
        kind: 'pfx' as const,
        blob: new Uint8Array(readFileSync(certs.serverPfx)),
        password: certs.pfxPassword,
      },
    ]) {
      const { listener, accepted } = await startTls({ certificate });
      const { socket, error } = await connectTls(listener);
      expect(error).toBeUndefined();
      new Recorder(await accepted.next(), true);
      socket.write('pfx');
      expect((await readBytes(socket, 3)).toString()).toBe('pfx');
    }
  });

  it('loads in-memory PEM strings', async () => {
    const { listener, accepted } = await startTls({
      certificate: { kind: 'pem', cert: certs.serverPem, key: certs.serverKeyPem },
    });
    const { error } = await connectTls(listener);
    expect(error).toBeUndefined();
    expect((await accepted.next()).tls?.protocol).toBe('TLSv1.3');
  });

  it('rejects start() on a wrong PFX password, naming the listener and the file', async () => {
    const listener = new TlsListener({
      host: '127.0.0.1',
      port: 0,
      certificate: { kind: 'pfx', file: certs.serverPfx, password: 'wrong' },
    });
    const error = await listener.start().catch((e: unknown) => e);
    expect(isTransportError(error, 'TRANSPORT_CERT_PASSWORD')).toBe(true);
    expect((error as { file: string }).file).toBe(certs.serverPfx);
    expect((error as Error).message).toContain(certs.serverPfx);
    expect((error as Error).message).toContain('tls://127.0.0.1:0');
    expect(listener.address()).toBeNull();
  });

  for (const [format, keyOf] of [
    ['PKCS#8', () => certs.serverKeyEncrypted],
    ['traditional', () => certs.serverKeyEncryptedLegacy],
  ] as const) {
    it(`loads a ${format} encrypted PEM key with its passphrase`, async () => {
      expect(readFileSync(keyOf(), 'utf8')).toContain('ENCRYPTED');
      const { listener, accepted } = await startTls({
        certificate: {
          kind: 'pem',
          certFile: certs.serverCert,
          keyFile: keyOf(),
          passphrase: certs.keyPassphrase,
        },
      });
      const { socket, error } = await connectTls(listener);
      expect(error).toBeUndefined();
      new Recorder(await accepted.next(), true);
      socket.write('unlocked');
      expect((await readBytes(socket, 8)).toString()).toBe('unlocked');
    });

    it(`rejects start() on a wrong or missing passphrase of a ${format} key, naming the key file`, async () => {
      for (const passphrase of ['wrong', 'key-secreT', undefined]) {
        const listener = new TlsListener({
          host: '127.0.0.1',
          port: 0,
          certificate: {
            kind: 'pem',
            certFile: certs.serverCert,
            keyFile: keyOf(),
            ...(passphrase === undefined ? {} : { passphrase }),
          },
        });
        const error = await listener.start().catch((e: unknown) => e);
        expect(isTransportError(error, 'TRANSPORT_CERT_PASSWORD'), String(error)).toBe(true);
        expect((error as { file: string }).file).toBe(keyOf());
        expect((error as Error).message).toContain(keyOf());
        expect(listener.address()).toBeNull();
      }
    });
  }

  it('reports a wrong passphrase as such even when the decrypted garbage passes the padding check', async () => {
    // About one wrong passphrase in 300 decrypts to bytes with valid padding, which then fail to parse
    // (ERR_OSSL_UNSUPPORTED rather than "bad decrypt"). Find one; the error must still be the password.
    const key = readFileSync(certs.serverKeyEncryptedLegacy);
    let lucky: string | undefined;
    for (let i = 0; i < 4000 && lucky === undefined; i++) {
      try {
        createPrivateKey({ key, passphrase: `wrong-${i}` });
      } catch (error) {
        if ((error as { code?: unknown }).code !== 'ERR_OSSL_BAD_DECRYPT') lucky = `wrong-${i}`;
      }
    }
    expect(lucky).toBeDefined();
    const listener = new TlsListener({
      port: 0,
      certificate: {
        kind: 'pem',
        certFile: certs.serverCert,
        keyFile: certs.serverKeyEncryptedLegacy,
        passphrase: lucky!,
      },
    });
    const error = await listener.start().catch((e: unknown) => e);
    expect(isTransportError(error, 'TRANSPORT_CERT_PASSWORD'), String(error)).toBe(true);
  });

  it('takes the passphrase of an in-memory encrypted key too', async () => {
    const key = readFileSync(certs.serverKeyEncrypted, 'utf8');
    const ok = await startTls({
      certificate: { kind: 'pem', cert: certs.serverPem, key, passphrase: certs.keyPassphrase },
    });
    expect((await connectTls(ok.listener)).error).toBeUndefined();
    await ok.accepted.next();
    const wrong = new TlsListener({
      port: 0,
      certificate: { kind: 'pem', cert: certs.serverPem, key, passphrase: 'wrong' },
    });
    expect(isTransportError(await wrong.start().catch((e: unknown) => e), 'TRANSPORT_CERT_PASSWORD')).toBe(
      true,
    );
  });

  it('rejects start() on a missing file, naming it', async () => {
    const missing = join(certs.dir, 'nope.crt');
    const listener = new TlsListener({
      host: '127.0.0.1',
      port: 0,
      certificate: { kind: 'pem', certFile: missing, keyFile: certs.serverKey },
    });
    const error = await listener.start().catch((e: unknown) => e);
    expect(isTransportError(error, 'TRANSPORT_CERT_FILE_MISSING')).toBe(true);
    expect((error as { file: string }).file).toBe(missing);
    expect((error as Error).message).toContain(missing);
  });

  it('rejects start() on a certificate without its key', async () => {
    const noKey = new TlsListener({
      port: 0,
      certificate: { kind: 'pfx', file: certs.serverPfxNoKey, password: certs.pfxPassword },
    });
    const error = await noKey.start().catch((e: unknown) => e);
    expect(isTransportError(error, 'TRANSPORT_CERT_KEY_MISSING')).toBe(true);
    expect((error as { file: string }).file).toBe(certs.serverPfxNoKey);
    const mismatch = new TlsListener({
      port: 0,
      certificate: { kind: 'pem', certFile: certs.serverCert, keyFile: certs.clientKey },
    });
    const error2 = await mismatch.start().catch((e: unknown) => e);
    expect(isTransportError(error2, 'TRANSPORT_CERT_KEY_MISSING')).toBe(true);
    expect((error2 as { file: string }).file).toBe(certs.clientKey);
  });

  it('refuses a TLS 1.1 client by default', async () => {
    const { listener, accepted, rejected } = await startTls();
    const { socket, error } = await connectTls(listener, {
      minVersion: 'TLSv1',
      maxVersion: 'TLSv1.1',
      ciphers: 'DEFAULT@SECLEVEL=0',
    });
    await expectRefused(socket);
    expect(error).toBeDefined();
    expect(accepted.count).toBe(0);
    await new Promise<void>((resolve) => {
      const wait = () => (rejected.length > 0 ? resolve() : setImmediate(wait));
      wait();
    });
    expect(rejected[0]?.error.code).toBe('TRANSPORT_TLS_HANDSHAKE');
  });

  it('honours enabledProtocols (TLS 1.2 only)', async () => {
    const { listener, accepted } = await startTls({ enabledProtocols: ['TLSv1.2'] });
    await connectTls(listener);
    expect((await accepted.next()).tls?.protocol).toBe('TLSv1.2');
  });

  it('writes the key log file', async () => {
    const keyLogFile = join(certs.dir, 'keys.log');
    const { listener, accepted } = await startTls({ keyLogFile });
    await connectTls(listener);
    await accepted.next();
    await connectTls(listener, { maxVersion: 'TLSv1.2' });
    await accepted.next();
    await listener.stop();
    const log = readFileSync(keyLogFile, 'utf8');
    expect(log).toMatch(/^CLIENT_HANDSHAKE_TRAFFIC_SECRET [0-9a-f]+ [0-9a-f]+$/m);
    expect(log).toMatch(/^CLIENT_TRAFFIC_SECRET_0 /m);
    expect(log).toMatch(/^CLIENT_RANDOM [0-9a-f]+ [0-9a-f]+$/m);
  });

  it('bounds the handshake with connectTimeoutMs', async () => {
    const { listener, accepted, rejected } = await startTls({ connectTimeoutMs: 200 });
    const { connectTcp, closedOf } = await import('./helpers/util.js');
    const raw = await connectTcp(portOf(listener));
    await closedOf(raw);
    expect(accepted.count).toBe(0);
    expect(rejected.map((r) => r.error.code)).toEqual(['TRANSPORT_CONNECT_TIMEOUT']);
  });
});

describe('TlsListener resets', () => {
  it('lingerSeconds 0 closes a TLS connection on destroy() without crashing (no RST under TLS)', async () => {
    const { listener, accepted } = await startTls({ lingerSeconds: 0 });
    const { socket } = await connectTls(listener);
    socket.on('error', () => {});
    const connection = await accepted.next();
    const recorder = new Recorder(connection);
    connection.destroy();
    await recorder.closed;
    if (!socket.closed) await once(socket, 'close');
    expect(listener.connections.size).toBe(0);
  });

  it('survives a client that drops the connection without close_notify', async () => {
    const { listener, accepted } = await startTls();
    const { socket } = await connectTls(listener);
    const recorder = new Recorder(await accepted.next());
    socket.write('x');
    await recorder.receive(1);
    socket.destroy();
    await recorder.closed;
    expect(recorder.closeCount).toBe(1);
    expect(listener.connections.size).toBe(0);
  });
});
