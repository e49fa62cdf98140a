import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isTransportError, nextConnectionId, TransportError } from '../src/index.js';

describe('errors', () => {
  it('matches on code, not on the class', () => {
    const error = new TransportError('TRANSPORT_CERT_PASSWORD', 'bad', {
      listener: 'tls://x:1',
      file: '/a.pfx',
    });
    expect(isTransportError(error)).toBe(true);
    expect(isTransportError(error, 'TRANSPORT_CERT_PASSWORD')).toBe(true);
    expect(isTransportError(error, 'TRANSPORT_CLOSED')).toBe(false);
    expect(error.listener).toBe('tls://x:1');
    expect(error.file).toBe('/a.pfx');
    expect(isTransportError({ code: 'TRANSPORT_CLOSED', message: 'from another copy' })).toBe(true);
    expect(isTransportError({ code: 'ECONNRESET' })).toBe(false);
    expect(isTransportError(null)).toBe(false);
    const cause = new Error('inner');
    expect(new TransportError('TRANSPORT_LISTEN_FAILED', 'x', { cause }).cause).toBe(cause);
  });

  it('hands out unique connection ids', () => {
    const a = nextConnectionId();
    const b = nextConnectionId();
    expect(a).toMatch(/^c\d+$/);
    expect(a).not.toBe(b);
  });

  it('keeps ws out of the package root', () => {
    const index = readFileSync(new URL('../src/index.ts', import.meta.url), 'utf8');
    expect(index).not.toMatch(/from '\.\/(ws|tcp|tls)\.js'/);
    expect(index).not.toMatch(/from 'ws'/);
  });
});
