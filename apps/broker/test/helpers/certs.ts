import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Certificates made fresh with openssl in a temp dir for one test file. */
export interface E2eCerts {
  dir: string;
  /** The test CA's certificate (PEM file) and its text. */
  caCert: string;
  caPem: string;
  /** Server certificate for localhost / 127.0.0.1 (SAN), signed by the CA, and its key. */
  serverCert: string;
  serverKey: string;
  /** The server certificate, its key and the CA as PKCS#12, protected by `pfxPassword`. */
  serverPfx: string;
  pfxPassword: string;
  /** A client certificate signed by the CA, and its key. */
  clientCert: string;
  clientKey: string;
  cleanup(): void;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 15_000 });
}

// EC P-256 keys: RSA key generation would dominate the file's time on a 2-core machine.
const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function leaf(dir: string, name: string, cn: string, ext: string): void {
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(dir, ['req', ...KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-set_serial',
    String(Math.floor(Math.random() * 1e9) + 1),
    '-days',
    '2',
    '-out',
    `${name}.crt`,
    '-extfile',
    `${name}.ext`,
  ]);
}

/** Creates a CA, a server certificate (SAN localhost, 127.0.0.1), a client certificate and a server PFX. */
export function createE2eCerts(): E2eCerts {
  const dir = mkdtempSync(join(tmpdir(), 'broker-e2e-certs-'));
  openssl(dir, [
    'req',
    '-x509',
    ...KEY,
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '2',
    '-subj',
    '/CN=Broker E2E Test CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  leaf(
    dir,
    'server',
    'localhost',
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n',
  );
  leaf(dir, 'client', 'e2e-client', 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n');
  const pfxPassword = 'e2e-pfx-secret';
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
  const p = (f: string) => join(dir, f);
  return {
    dir,
    caCert: p('ca.crt'),
    caPem: readFileSync(p('ca.crt'), 'utf8'),
    serverCert: p('server.crt'),
    serverKey: p('server.key'),
    serverPfx: p('server.pfx'),
    pfxPassword,
    clientCert: p('client.crt'),
    clientKey: p('client.key'),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
