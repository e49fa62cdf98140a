import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Paths (and PEM contents) of the certificates one test file needs, made fresh in a temp dir. */
export interface TestCerts {
  dir: string;
  caCert: string;
  caPem: string;
  serverCert: string;
  serverKey: string;
  serverPem: string;
  serverKeyPem: string;
  clientCert: string;
  clientKey: string;
  /** A client certificate signed by a CA the server does not trust. */
  otherClientCert: string;
  otherClientKey: string;
  otherCaCert: string;
  /** The server certificate and key as PKCS#12, protected by `pfxPassword`. */
  serverPfx: string;
  pfxPassword: string;
  /** A PKCS#12 file holding the certificate but not its key. */
  serverPfxNoKey: string;
  /** The server key encrypted with `keyPassphrase` (PKCS#8, `-----BEGIN ENCRYPTED PRIVATE KEY-----`). */
  serverKeyEncrypted: string;
  /** The same key in OpenSSL's traditional encrypted PEM (`Proc-Type: 4,ENCRYPTED`). */
  serverKeyEncryptedLegacy: string;
  keyPassphrase: string;
  cleanup(): void;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

// EC P-256 keys: generating RSA keys would dominate the suite's time on a 2-core machine.
const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function makeCa(dir: string, name: string): void {
  openssl(dir, [
    'req',
    '-x509',
    ...KEY,
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.crt`,
    '-days',
    '2',
    '-subj',
    `/CN=${name} Test CA`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
}

function makeLeaf(dir: string, name: string, ca: string, cn: string, ext: string): void {
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(dir, ['req', ...KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.crt`,
    '-CAkey',
    `${ca}.key`,
    '-set_serial',
    String(Math.floor(Math.random() * 1e9) + 1),
    '-out',
    `${name}.crt`,
    '-days',
    '2',
    '-extfile',
    `${name}.ext`,
  ]);
}

/** Creates a CA, a server certificate for localhost/127.0.0.1/::1, client certificates and PFX files. */
export function createTestCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), 'transport-certs-'));
  makeCa(dir, 'ca');
  makeCa(dir, 'other-ca');
  makeLeaf(
    dir,
    'server',
    'ca',
    'localhost',
    'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n',
  );
  const clientExt = 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n';
  makeLeaf(dir, 'client', 'ca', 'client-1', clientExt);
  makeLeaf(dir, 'other-client', 'other-ca', 'intruder', clientExt);
  const pfxPassword = 'pfx-secret';
  openssl(dir, [
    'pkcs12',
    '-export',
    '-in',
    'server.crt',
    '-inkey',
    'server.key',
    '-certfile',
    'ca.crt',
    '-out',
    'server.pfx',
    '-passout',
    `pass:${pfxPassword}`,
  ]);
  openssl(dir, [
    'pkcs12',
    '-export',
    '-in',
    'server.crt',
    '-nokeys',
    '-out',
    'server-nokey.pfx',
    '-passout',
    `pass:${pfxPassword}`,
  ]);
  const keyPassphrase = 'key-secret';
  // The same key encrypted: PKCS#8 (`pkey`) and OpenSSL's traditional PEM encryption (`ec`).
  for (const [command, out] of [
    ['pkey', 'server-encrypted.key'],
    ['ec', 'server-encrypted-legacy.key'],
  ]) {
    openssl(dir, [
      command!,
      '-in',
      'server.key',
      '-aes256',
      '-passout',
      `pass:${keyPassphrase}`,
      '-out',
      out!,
    ]);
  }
  const p = (f: string) => join(dir, f);
  return {
    dir,
    caCert: p('ca.crt'),
    caPem: readFileSync(p('ca.crt'), 'utf8'),
    serverCert: p('server.crt'),
    serverKey: p('server.key'),
    serverPem: readFileSync(p('server.crt'), 'utf8'),
    serverKeyPem: readFileSync(p('server.key'), 'utf8'),
    clientCert: p('client.crt'),
    clientKey: p('client.key'),
    otherClientCert: p('other-client.crt'),
    otherClientKey: p('other-client.key'),
    otherCaCert: p('other-ca.crt'),
    serverPfx: p('server.pfx'),
    pfxPassword,
    serverPfxNoKey: p('server-nokey.pfx'),
    serverKeyEncrypted: p('server-encrypted.key'),
    serverKeyEncryptedLegacy: p('server-encrypted-legacy.key'),
    keyPassphrase,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
