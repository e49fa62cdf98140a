/**
 * The reference component's Config settings that apply to this broker, with the reference's value
 * syntax: booleans as True/False/1/0/Yes/No (any case), numbers as decimal integers.
 */
import type { TlsProtocolVersion } from '@broker/transport';

export class SettingError extends Error {
  override readonly name = 'SettingError';
  readonly code: 'APP_UNKNOWN_SETTING' | 'APP_READ_ONLY_SETTING' | 'APP_INVALID_SETTING_VALUE';
  constructor(code: SettingError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

/** Values of the settings, as the broker uses them. */
export interface BrokerSettings {
  /** 0 none, 1 info (default), 2 verbose, 3 debug. */
  LogLevel: number;
  /** Seconds a new connection may take to send its first bytes and CONNECT; 0 = no limit. Default 30. */
  ConnectionTimeout: number;
  TcpNoDelay: boolean;
  TCPKeepAlive: boolean;
  /** Milliseconds of inactivity before a TCP keep-alive probe. */
  KeepAliveTime: number;
  /** Milliseconds between probes (not settable per socket in Node.js; kept and reported). */
  KeepAliveInterval: number;
  /** True: close gracefully; False with LingerTime 0: reset. */
  Linger: boolean;
  LingerTime: number;
  /** Bytes; Node.js sizes socket buffers itself (kept and reported). */
  InBufferSize: number;
  /** Bytes of unsent output above which a connection is treated as not keeping up (the high-water mark). */
  OutBufferSize: number;
  /** Comma-separated: TLSv1, TLSv1.1, TLSv1.2, TLSv1.3. Default TLSv1.2,TLSv1.3. */
  SSLEnabledProtocols: string;
  /** An OpenSSL cipher list; empty = Node's default. */
  SSLEnabledCipherSuites: string;
  /** PEM certificates (newline separated, as the reference) trusted for client certificates. */
  SSLClientCACerts: string;
  /** A file that receives TLS session secrets in SSLKEYLOGFILE format. */
  SSLKeyLogFile: string;
  UseIPv6: boolean;
  /** Mask passwords in log lines (always on here: passwords are never logged). */
  MaskSensitiveData: boolean;
}

export const DEFAULT_SETTINGS: Readonly<BrokerSettings> = Object.freeze({
  LogLevel: 1,
  ConnectionTimeout: 30,
  TcpNoDelay: true,
  TCPKeepAlive: false,
  KeepAliveTime: 0,
  KeepAliveInterval: 0,
  Linger: true,
  LingerTime: 0,
  InBufferSize: 65_536,
  OutBufferSize: 65_536,
  SSLEnabledProtocols: 'TLSv1.2,TLSv1.3',
  SSLEnabledCipherSuites: '',
  SSLClientCACerts: '',
  SSLKeyLogFile: '',
  UseIPv6: false,
  MaskSensitiveData: true,
});

/** Settings that only report. */
const READ_ONLY = new Set(['BuildInfo']);

type Kind = 'boolean' | 'integer' | 'string';
const KIND: Record<keyof BrokerSettings, Kind> = {
  LogLevel: 'integer',
  ConnectionTimeout: 'integer',
  TcpNoDelay: 'boolean',
  TCPKeepAlive: 'boolean',
  KeepAliveTime: 'integer',
  KeepAliveInterval: 'integer',
  Linger: 'boolean',
  LingerTime: 'integer',
  InBufferSize: 'integer',
  OutBufferSize: 'integer',
  SSLEnabledProtocols: 'string',
  SSLEnabledCipherSuites: 'string',
  SSLClientCACerts: 'string',
  SSLKeyLogFile: 'string',
  UseIPv6: 'boolean',
  MaskSensitiveData: 'boolean',
};

const TLS_VERSIONS = new Set<string>(['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3']);

/** Parses the reference's boolean syntax. */
export function parseBoolean(value: string): boolean | undefined {
  switch (value.trim().toLowerCase()) {
    case 'true':
    case '1':
    case 'yes':
    case 'on':
      return true;
    case 'false':
    case '0':
    case 'no':
    case 'off':
      return false;
    default:
      return undefined;
  }
}

/** The settings' names, case as the reference writes them; lookups ignore case. */
function canonicalName(name: string): keyof BrokerSettings | undefined {
  const lower = name.trim().toLowerCase();
  return (Object.keys(KIND) as Array<keyof BrokerSettings>).find((key) => key.toLowerCase() === lower);
}

/**
 * Applies `config('Name=Value')` or reads `config('Name')` against `settings`. Returns the value
 * (as the reference prints it) after a set or for a get.
 * @throws SettingError for an unknown or read-only name or a value of the wrong form.
 */
export function applyConfig(settings: BrokerSettings, command: string): string {
  const eq = command.indexOf('=');
  const rawName = eq < 0 ? command : command.slice(0, eq);
  if (READ_ONLY.has(rawName.trim()) && eq >= 0) {
    throw new SettingError('APP_READ_ONLY_SETTING', `setting ${rawName.trim()} is read-only`);
  }
  if (rawName.trim() === 'BuildInfo') return `mqtt-broker (Node.js ${process.version})`;
  const name = canonicalName(rawName);
  if (name === undefined) {
    throw new SettingError(
      'APP_UNKNOWN_SETTING',
      `unknown setting "${rawName.trim()}"; known: ${Object.keys(KIND).join(', ')}, BuildInfo`,
    );
  }
  if (eq >= 0) {
    const value = command.slice(eq + 1).trim();
    const record = settings as unknown as Record<string, unknown>;
    switch (KIND[name]) {
      case 'boolean': {
        const parsed = parseBoolean(value);
        if (parsed === undefined) {
          throw new SettingError(
            'APP_INVALID_SETTING_VALUE',
            `${name} takes True/False/1/0/Yes/No, got "${value}"`,
          );
        }
        record[name] = parsed;
        break;
      }
      case 'integer': {
        if (!/^-?\d+$/.test(value)) {
          throw new SettingError('APP_INVALID_SETTING_VALUE', `${name} takes a whole number, got "${value}"`);
        }
        const parsed = Number(value);
        if (parsed < 0 || (name === 'LogLevel' && parsed > 3)) {
          throw new SettingError('APP_INVALID_SETTING_VALUE', `${name} is out of range: ${value}`);
        }
        record[name] = parsed;
        break;
      }
      default:
        if (name === 'SSLEnabledProtocols') {
          const versions = value
            .split(',')
            .map((v) => v.trim())
            .filter(Boolean);
          const bad = versions.find((v) => !TLS_VERSIONS.has(v));
          if (bad !== undefined || versions.length === 0) {
            throw new SettingError(
              'APP_INVALID_SETTING_VALUE',
              `SSLEnabledProtocols takes a comma-separated list of TLSv1, TLSv1.1, TLSv1.2, TLSv1.3; got "${value}"`,
            );
          }
        }
        record[name] = value;
    }
  }
  const current = settings[name];
  return typeof current === 'boolean' ? (current ? 'True' : 'False') : String(current);
}

export function enabledTlsProtocols(settings: BrokerSettings): TlsProtocolVersion[] {
  return settings.SSLEnabledProtocols.split(',')
    .map((v) => v.trim())
    .filter((v): v is TlsProtocolVersion => TLS_VERSIONS.has(v));
}
