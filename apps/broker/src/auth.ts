/**
 * Users and ACLs for the runnable server: listeners on the MqttBroker's decision events that check
 * CONNECT credentials against the password file (see passwd.ts) and SUBSCRIBE / PUBLISH against
 * the ACL file (see acl.ts).
 */
import { type Acl, readAclFile } from './acl.js';
import type { MqttBroker, PublishRequestEvent, SessionRequestEvent, SubscribeEvent } from './mqtt-broker.js';
import { hashPassword, readPasswordFile, verifyPassword } from './passwd.js';

export interface AuthOptions {
  /** Users and their scrypt hashes; unset: no client can prove a username. */
  passwordFile?: string | undefined;
  /** Mosquitto-style ACL; unset: every topic is open to every accepted client (except $SYS publishing). */
  aclFile?: string | undefined;
  /** Whether clients without a username may connect. */
  allowAnonymous: boolean;
}

export interface AuthLogger {
  info(msg: string): void;
  warn(msg: string): void;
}

export interface InstalledAuth {
  /**
   * Re-reads the password file and the ACL file (e.g. on SIGHUP). On an error the rules in force
   * stay, the error is logged as a warning, and the answer is false; it never throws. Connected
   * clients keep their session; new checks use the new rules.
   */
  reload(): boolean;
}

// CONNACK return codes, MQTT 3.1.1 table 3.1.
const BAD_USER_NAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;
const SUBACK_FAILURE = 0x80;

const silentLogger: AuthLogger = { info: () => undefined, warn: () => undefined };

interface Loaded {
  users: Map<string, string> | undefined;
  acl: Acl | undefined;
}

function load(options: AuthOptions): Loaded {
  return {
    users: options.passwordFile === undefined ? undefined : readPasswordFile(options.passwordFile),
    acl: options.aclFile === undefined ? undefined : readAclFile(options.aclFile),
  };
}

/**
 * Registers the checks on `broker`. Reads both files now.
 * @throws PasswordFileError APP_INVALID_PASSWORD_FILE or AclFileError APP_INVALID_ACL_FILE, so a
 *   server with a broken file does not start.
 */
export function installAuth(
  broker: MqttBroker,
  options: AuthOptions,
  logger: AuthLogger = silentLogger,
): InstalledAuth {
  let loaded = load(options);
  describe(loaded, options, logger);

  // Hashed once, lazily: an unknown username is checked against it so that answering takes as
  // long as for a known one, and response time does not tell which usernames exist.
  let dummyHash: Promise<string> | undefined;

  broker.on('sessionRequest', async (e: SessionRequestEvent) => {
    if (!e.accept) return; // another listener already refused
    // The facade reports "no username" as ''; an empty username proves nothing either.
    if (e.userName === '') {
      if (!options.allowAnonymous) {
        e.accept = false;
        e.returnCode = NOT_AUTHORIZED;
      }
      return;
    }
    const { users } = loaded;
    if (users === undefined) {
      // No password file: a username is only a claim. It is accepted (and used for the ACL, as
      // Mosquitto does) only where anonymous clients are; otherwise nobody can be authenticated.
      if (!options.allowAnonymous) {
        e.accept = false;
        e.returnCode = NOT_AUTHORIZED;
      }
      return;
    }
    const hash = users.get(e.userName);
    // User name and password are for the server to authenticate (3.1.3.4, 3.1.3.5): an unknown
    // user, a missing or a wrong password is refused with CONNACK return code 4, "bad user name or
    // password" (table 3.1). The hash is computed in every case, so timing tells nothing either.
    if (hash === undefined) dummyHash ??= hashPassword('unknown user');
    const matches = await verifyPassword(e.passwordBytes ?? new Uint8Array(0), hash ?? (await dummyHash!));
    const isValid = matches && hash !== undefined && e.passwordBytes !== undefined;
    if (!isValid) {
      e.accept = false;
      e.returnCode = BAD_USER_NAME_OR_PASSWORD;
    }
  });

  broker.on('subscribe', (e: SubscribeEvent) => {
    const { acl } = loaded;
    if (acl === undefined || e.returnCode === SUBACK_FAILURE) return;
    // A granted filter keeps the QoS already in returnCode (the requested one, or a lower one that
    // another listener chose).
    if (!acl.canSubscribe(userOf(e), e.clientId, e.topicFilter)) e.returnCode = SUBACK_FAILURE;
  });

  broker.on('publishRequest', (e: PublishRequestEvent) => {
    if (!e.accept) return;
    // $SYS is the broker's own statistics; a client must not be able to forge them, whatever the
    // ACL says (4.7.2: topics beginning with '$' are for the server's own use).
    if (e.topic.startsWith('$SYS')) {
      e.accept = false;
      return;
    }
    // A refused PUBLISH is acknowledged and dropped by the broker (as Mosquitto does), so a QoS 1/2
    // client does not retry it forever.
    if (loaded.acl !== undefined && !loaded.acl.canPublish(userOf(e), e.clientId, e.topic)) e.accept = false;
  });

  return {
    reload(): boolean {
      try {
        const next = load(options);
        loaded = next;
        describe(next, options, logger);
        return true;
      } catch (error) {
        logger.warn(
          `users and ACL not reloaded, the previous ones stay in force: ${(error as Error).message}`,
        );
        return false;
      }
    },
  };
}

function userOf(e: { userName: string }): string | undefined {
  return e.userName === '' ? undefined : e.userName;
}

function describe(loaded: Loaded, options: AuthOptions, logger: AuthLogger): void {
  if (loaded.users !== undefined) logger.info(`users: ${loaded.users.size} from ${options.passwordFile}`);
  if (loaded.acl !== undefined) logger.info(`ACL: ${loaded.acl.size} rules from ${options.aclFile}`);
  if (loaded.users === undefined && !options.allowAnonymous) {
    logger.warn('no password file and anonymous clients are not allowed: every client will be refused');
  }
  if (
    loaded.users === undefined &&
    loaded.acl !== undefined &&
    loaded.acl.rules.users.size > 0 &&
    options.allowAnonymous
  ) {
    logger.warn('the ACL has user sections but there is no password file: usernames are not verified');
  }
}
