export {
  ConfigError,
  type ConfigFile,
  checkConfig,
  type Overrides,
  readConfigFile,
  resolveConfig,
  type ServerConfig,
} from './config.js';
export {
  type BrokerConnection,
  type BrokerMessage,
  BrokerProtocol,
  type BrokerSession,
  CertStoreType,
  type ConnectionRequestEvent,
  type ListenerConfig,
  type ListenerInfo,
  MqttBroker,
  MqttBrokerError,
  type MqttBrokerEventName,
  type MqttBrokerEvents,
  type MqttBrokerOptions,
  type PublishRequestEvent,
  type SessionRequestEvent,
  type SslClientAuthenticationEvent,
  type SslStatusEvent,
  type SubscribeEvent,
} from './mqtt-broker.js';
export { type RunningServer, startServer } from './server.js';
export { applyConfig, type BrokerSettings, DEFAULT_SETTINGS, SettingError } from './settings.js';
