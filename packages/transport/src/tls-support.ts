import { createPrivateKey, X509Certificate } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import type { Connection } from './connection.js';
import { TransportError, type TransportErrorCode } from './errors.js';
import type { Admission, Handshake, SecuredCallback } from './net-listener.js';
import type {
  CaSource,
  ClientCertificateInfo,
  PeerCertificate,
  PemData,
  TlsDetails,
  TlsOptions,
  TlsProtocolVersion,
} from './options.js';

const VERSIONS: readonly TlsProtocolVersion[] = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'];

interface Owner {
  readonly name: string;
  readonly connectTimeoutMs: number;
}

function fail(
  code: TransportErrorCode,
  owner: string,
  message: string,
  file?: string,
  cause?: unknown,
): TransportError {
  const where = file === undefined ? '' : ` (${file})`;
  return new TransportError(code, `${owner}: ${message}${where}`, { listener: owner, file, cause });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function readSource(file: string, owner: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (error) {
    throw fail('TRANSPORT_CERT_FILE_MISSING', owner, `cannot read ${what}: ${messageOf(error)}`, file, error);
  }
}

function isPasswordError(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  if (code === 'ERR_MISSING_PASSPHRASE' || code === 'ERR_OSSL_BAD_DECRYPT') return true;
  return /mac verify failure|bad decrypt|passphrase|password|interrupted or cancelled/i.test(
    messageOf(error),
  );
}

/** True for a PEM private key that needs a passphrase (PKCS#8 or OpenSSL's traditional encryption). */
function isEncryptedPem(key: Buffer): boolean {
  const text = key.toString('latin1');
  return text.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----') || text.includes('Proc-Type: 4,ENCRYPTED');
}

function versionRange(
  options: TlsOptions,
  owner: string,
): { minVersion: tls.SecureVersion; maxVersion: tls.SecureVersion } {
  const listed = options.enabledProtocols;
  if (listed !== undefined && (options.minVersion !== undefined || options.maxVersion !== undefined)) {
    throw fail(
      'TRANSPORT_INVALID_OPTIONS',
      owner,
      'give enabledProtocols or minVersion/maxVersion, not both',
    );
  }
  if (listed !== undefined) {
    const indexes = listed.map((v) => VERSIONS.indexOf(v));
    if (indexes.length === 0 || indexes.includes(-1)) {
      throw fail(
        'TRANSPORT_INVALID_OPTIONS',
        owner,
        `enabledProtocols must list TLS versions, got ${listed.join(', ')}`,
      );
    }
    // OpenSSL configures a range; a gap such as [TLSv1, TLSv1.2] also enables TLSv1.1.
    return {
      minVersion: VERSIONS[Math.min(...indexes)] as tls.SecureVersion,
      maxVersion: VERSIONS[Math.max(...indexes)] as tls.SecureVersion,
    };
  }
  return { minVersion: options.minVersion ?? 'TLSv1.2', maxVersion: options.maxVersion ?? 'TLSv1.3' };
}

async function loadCa(sources: readonly CaSource[], owner: string): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (const source of sources) {
    const file = typeof source === 'object' && 'file' in source ? source.file : undefined;
    const data =
      file === undefined ? Buffer.from(source as PemData) : await readSource(file, owner, 'client CA');
    try {
      new X509Certificate(data);
    } catch (error) {
      throw fail(
        'TRANSPORT_CERT_INVALID',
        owner,
        `invalid client CA certificate: ${messageOf(error)}`,
        file,
        error,
      );
    }
    out.push(data);
  }
  return out;
}

/** @internal Reads and validates the certificate options; the result feeds `tls.createServer`. */
export async function loadTlsServerOptions(options: TlsOptions, owner: string): Promise<tls.TlsOptions> {
  const result: tls.TlsOptions = versionRange(options, owner);
  if (options.ciphers !== undefined) result.ciphers = options.ciphers;
  const certificate = options.certificate;
  if (certificate.kind === 'pfx') {
    const file = 'file' in certificate ? certificate.file : undefined;
    const pfx =
      'file' in certificate
        ? await readSource(certificate.file, owner, 'PFX')
        : Buffer.from(certificate.blob);
    result.pfx = pfx;
    if (certificate.password !== undefined) result.passphrase = certificate.password;
    try {
      tls.createSecureContext({
        pfx,
        ...(certificate.password === undefined ? {} : { passphrase: certificate.password }),
      });
    } catch (error) {
      const label = file ?? '<pfx blob>';
      if (isPasswordError(error)) {
        throw fail('TRANSPORT_CERT_PASSWORD', owner, 'wrong or missing PFX password', label, error);
      }
      if (/private key/i.test(messageOf(error))) {
        throw fail(
          'TRANSPORT_CERT_KEY_MISSING',
          owner,
          'the PFX holds no private key for its certificate',
          label,
          error,
        );
      }
      throw fail('TRANSPORT_CERT_INVALID', owner, `invalid PFX: ${messageOf(error)}`, label, error);
    }
  } else {
    const certFile = 'certFile' in certificate ? certificate.certFile : undefined;
    const keyFile = 'keyFile' in certificate ? certificate.keyFile : undefined;
    let cert: Buffer;
    let key: Buffer;
    let chain: Buffer | undefined;
    if ('certFile' in certificate) {
      cert = await readSource(certificate.certFile, owner, 'certificate');
      if (!certificate.keyFile) {
        throw fail(
          'TRANSPORT_CERT_KEY_MISSING',
          owner,
          'the certificate has no keyFile',
          certificate.certFile,
        );
      }
      key = await readSource(certificate.keyFile, owner, 'private key');
      if (certificate.chainFile !== undefined)
        chain = await readSource(certificate.chainFile, owner, 'chain');
    } else {
      cert = Buffer.from(certificate.cert);
      key = Buffer.from(certificate.key ?? '');
      if (certificate.chain !== undefined) chain = Buffer.from(certificate.chain);
    }
    if (key.length === 0)
      throw fail('TRANSPORT_CERT_KEY_MISSING', owner, 'the certificate has no private key', certFile);
    const passphrase = certificate.passphrase;
    try {
      new X509Certificate(cert);
    } catch (error) {
      throw fail(
        'TRANSPORT_CERT_INVALID',
        owner,
        `invalid certificate: ${messageOf(error)}`,
        certFile,
        error,
      );
    }
    try {
      createPrivateKey(passphrase === undefined ? { key } : { key, passphrase });
    } catch (error) {
      // A wrong passphrase usually fails the padding check ("bad decrypt"), but about one in 256 times the
      // garbage it decrypts to passes it and fails to parse instead: for an encrypted key, that is the
      // passphrase too.
      if (isPasswordError(error) || isEncryptedPem(key)) {
        throw fail('TRANSPORT_CERT_PASSWORD', owner, 'wrong or missing key passphrase', keyFile, error);
      }
      throw fail('TRANSPORT_CERT_INVALID', owner, `invalid private key: ${messageOf(error)}`, keyFile, error);
    }
    const fullCert = chain === undefined ? cert : Buffer.concat([cert, Buffer.from('\n'), chain]);
    result.cert = fullCert;
    result.key = key;
    if (passphrase !== undefined) result.passphrase = passphrase;
    try {
      tls.createSecureContext({ cert: fullCert, key, ...(passphrase === undefined ? {} : { passphrase }) });
    } catch (error) {
      if (/mismatch/i.test(messageOf(error))) {
        throw fail(
          'TRANSPORT_CERT_KEY_MISSING',
          owner,
          'the private key does not belong to the certificate',
          keyFile,
          error,
        );
      }
      throw fail(
        'TRANSPORT_CERT_INVALID',
        owner,
        `invalid certificate: ${messageOf(error)}`,
        certFile,
        error,
      );
    }
  }
  if (options.clientCA !== undefined) result.ca = await loadCa(options.clientCA, owner);
  try {
    // The full combination (versions, ciphers, CA) is checked here, so start() fails rather than every handshake.
    tls.createSecureContext(result);
  } catch (error) {
    throw fail(
      'TRANSPORT_INVALID_OPTIONS',
      owner,
      `TLS options refused: ${messageOf(error)}`,
      undefined,
      error,
    );
  }
  return result;
}

/** @internal Converts Node's certificate object to the public shape. */
export function toPeerCertificate(cert: X509Certificate): PeerCertificate {
  return {
    encoded: new Uint8Array(cert.raw),
    subject: cert.subject.split('\n').join(', '),
    issuer: cert.issuer.split('\n').join(', '),
    fingerprint256: cert.fingerprint256,
    validFrom: cert.validFrom,
    validTo: cert.validTo,
  };
}

/** @internal What a finished handshake negotiated, and how the client certificate fared. */
export function tlsDetailsOf(socket: tls.TLSSocket, clientCertificateRequested: boolean): TlsDetails {
  const x509 = socket.getPeerX509Certificate();
  const authorized = socket.authorized === true;
  let authorizationError: string | null = null;
  if (clientCertificateRequested && !authorized) {
    const reported = socket.authorizationError as unknown;
    if (x509 === undefined) authorizationError = 'NO_PEER_CERTIFICATE';
    else authorizationError = reported === undefined || reported === null ? 'UNKNOWN' : String(reported);
  }
  return {
    protocol: socket.getProtocol(),
    cipher: socket.getCipher()?.name ?? null,
    isPeerAuthorized: authorized,
    authorizationError,
    peerCertificate: x509 === undefined ? null : toPeerCertificate(x509),
  };
}

/**
 * @internal Server-side TLS for sockets accepted elsewhere. A `tls.Server` that never listens does the
 * handshakes: it is fed sockets with `emit('connection')` after admission, and it is what sets
 * `authorized`/`authorizationError` and reports handshake failures and key-log lines.
 */
export class TlsEngine implements Handshake {
  private server: tls.Server | undefined = undefined;
  private keyLog: WriteStream | undefined = undefined;
  private readonly pending = new Map<Socket, { admission: Admission; onSecured: SecuredCallback }>();

  constructor(
    private readonly options: TlsOptions,
    private readonly owner: Owner,
  ) {}

  async load(): Promise<void> {
    const serverOptions = await loadTlsServerOptions(this.options, this.owner.name);
    const requestCert =
      this.options.requestClientCertificate === true || this.options.requireClientCertificate === true;
    const timeoutMs = this.owner.connectTimeoutMs;
    const server = tls.createServer({
      ...serverOptions,
      requestCert,
      // Verification failures are decided after the handshake (onClientCertificate), not by OpenSSL.
      rejectUnauthorized: false,
      pauseOnConnect: true,
      // Our own connect timeout bounds the handshake; this is only the backstop when it is off.
      handshakeTimeout: timeoutMs > 0 ? timeoutMs + 1000 : 120_000,
    });
    server.on('secureConnection', this.onSecureConnection);
    server.on('tlsClientError', this.onClientError);
    if (this.options.keyLogFile !== undefined) {
      const file = this.options.keyLogFile;
      const stream = createWriteStream(file, { flags: 'a' });
      try {
        await new Promise<void>((resolve, reject) => {
          stream.once('open', () => resolve());
          stream.once('error', reject);
        });
      } catch (error) {
        throw fail(
          'TRANSPORT_INVALID_OPTIONS',
          this.owner.name,
          `cannot open keyLogFile: ${messageOf(error)}`,
          file,
          error,
        );
      }
      stream.on('error', () => {
        // A key log that cannot be written must not take the listener down.
      });
      this.keyLog = stream;
      server.on('keylog', this.onKeyLog);
    }
    this.server = server;
  }

  async close(): Promise<void> {
    const stream = this.keyLog;
    this.keyLog = undefined;
    if (stream !== undefined) await new Promise<void>((resolve) => stream.end(resolve));
  }

  /** Runs the handshake on an admitted socket; `onSecured` gets it once the client certificate is accepted. */
  handshake(admission: Admission, onSecured: SecuredCallback): void {
    const server = this.server;
    if (server === undefined) {
      admission.fail(
        new TransportError('TRANSPORT_CLOSED', 'TLS is not loaded', { listener: this.owner.name }),
      );
      return;
    }
    const raw = admission.socket;
    this.pending.set(raw, { admission, onSecured });
    raw.once('close', () => this.pending.delete(raw));
    this.status(admission.remoteAddress, 'TLS handshake started');
    server.emit('connection', raw);
  }

  /** Reports the negotiated parameters of a connection that was handed out. */
  reportNegotiated(connection: Connection): void {
    if (this.options.onTlsStatus === undefined) return;
    const details = connection.tls;
    this.status(
      connection.remoteAddress,
      `TLS established: ${details?.protocol ?? 'unknown protocol'}, cipher ${details?.cipher ?? 'unknown'}`,
      connection.id,
    );
  }

  private entryFor(socket: tls.TLSSocket): { admission: Admission; onSecured: SecuredCallback } | undefined {
    // Node keeps the wrapped socket as `_parent`; fall back to the peer address, unique among live sockets.
    const parent = (socket as unknown as { _parent?: unknown })._parent;
    if (parent !== undefined) {
      const found = this.pending.get(parent as Socket);
      if (found !== undefined) return found;
    }
    for (const [raw, entry] of this.pending) {
      if (raw.remotePort === socket.remotePort && raw.remoteAddress === socket.remoteAddress) return entry;
    }
    return undefined;
  }

  private readonly onKeyLog = (line: Buffer): void => {
    const stream = this.keyLog;
    if (stream?.writable) stream.write(line);
  };

  private readonly onClientError = (error: Error, socket: tls.TLSSocket): void => {
    const entry = this.entryFor(socket);
    if (entry === undefined) return;
    this.pending.delete(entry.admission.socket);
    const timeout = (error as { code?: unknown }).code === 'ERR_TLS_HANDSHAKE_TIMEOUT';
    this.status(entry.admission.remoteAddress, `TLS handshake failed: ${error.message.trim()}`);
    entry.admission.fail(
      new TransportError(
        timeout ? 'TRANSPORT_CONNECT_TIMEOUT' : 'TRANSPORT_TLS_HANDSHAKE',
        `TLS handshake failed: ${error.message.trim()}`,
        { listener: this.owner.name, cause: error },
      ),
    );
  };

  private readonly onSecureConnection = (socket: tls.TLSSocket): void => {
    const entry = this.entryFor(socket);
    if (entry === undefined) {
      socket.destroy();
      return;
    }
    const { admission, onSecured } = entry;
    this.pending.delete(admission.socket);
    if (admission.isSettled) {
      socket.destroy();
      return;
    }
    admission.upper = socket;
    // Until the Connection owns it, an error on the TLS layer must not be uncaught; the raw socket's
    // close (watched by the admission) reports it.
    socket.on('error', ignore);
    const details = this.detailsOf(socket);
    const accepted = (): void => {
      if (admission.isSettled) return;
      socket.off('error', ignore);
      onSecured(admission, socket, details);
    };
    const refused = (reason: string, cause?: unknown): void => {
      this.status(admission.remoteAddress, `client certificate refused: ${reason}`);
      admission.fail(
        new TransportError('TRANSPORT_CLIENT_CERT_REFUSED', `client certificate refused: ${reason}`, {
          listener: this.owner.name,
          cause,
        }),
      );
    };
    const requested =
      this.options.requestClientCertificate === true || this.options.requireClientCertificate === true;
    const hook = this.options.onClientCertificate;
    if (!requested) {
      accepted();
      return;
    }
    if (hook === undefined) {
      if (this.options.requireClientCertificate === true && !details.isPeerAuthorized) {
        refused(details.authorizationError ?? 'not verified');
      } else {
        accepted();
      }
      return;
    }
    const info: ClientCertificateInfo = {
      remoteAddress: admission.remoteAddress,
      remotePort: admission.remotePort,
      certificate: details.peerCertificate,
      isAuthorized: details.isPeerAuthorized,
      authorizationError: details.authorizationError,
    };
    let verdict: boolean | Promise<boolean>;
    try {
      verdict = hook(info);
    } catch (error) {
      refused('onClientCertificate threw', error);
      return;
    }
    if (typeof verdict === 'boolean') {
      if (verdict) accepted();
      else refused('by onClientCertificate');
      return;
    }
    Promise.resolve(verdict).then(
      (ok) => (ok === true ? accepted() : refused('by onClientCertificate')),
      (error: unknown) => refused('onClientCertificate rejected', error),
    );
  };

  private detailsOf(socket: tls.TLSSocket): TlsDetails {
    const requested =
      this.options.requestClientCertificate === true || this.options.requireClientCertificate === true;
    return tlsDetailsOf(socket, requested);
  }

  private status(remoteAddress: string, message: string, connectionId?: string): void {
    const hook = this.options.onTlsStatus;
    if (hook === undefined) return;
    try {
      hook(
        connectionId === undefined ? { remoteAddress, message } : { connectionId, remoteAddress, message },
      );
    } catch {
      // A status hook must not break a handshake.
    }
  }
}

function ignore(): void {}
