export { isPersistenceError, PersistenceError, type PersistenceErrorCode } from './errors.js';
export {
  type SessionFromJsonOptions,
  type SessionToJsonOptions,
  sessionFromJson,
  sessionToJson,
} from './session-json.js';
