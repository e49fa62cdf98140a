/** What the orchestrator asks of one load-generator process, and what it answers (JSON on stdout). */
import type { Correctness } from './tracker.js';

export type Qos = 0 | 1 | 2;

export interface ThroughputSpec {
  mode: 'throughput';
  host: string;
  port: number;
  publishers: number;
  qos: Qos;
  payloadBytes: number;
  topic: string;
  /** QoS 1/2: messages in flight per publisher (unacknowledged). */
  window: number;
  /**
   * QoS 0: messages per publisher sent but not yet seen by every subscriber (end-to-end flow
   * control, so that the load does not overrun the broker's buffers). 0: no limit (open loop).
   */
  qos0Window: number;
  /** One topic filter per subscriber (empty: null-sink ceiling, publishers only). */
  subscribers: string[];
  /** Subscribers' clean-session flag (false: persistent sessions). */
  cleanSession: boolean;
  warmupMs: number;
  durationMs: number;
  /** Longest wait after the publishers stop for the last deliveries and acknowledgements. */
  drainMs: number;
  /** Latency mode: a fixed publish rate (msg/s) instead of as fast as possible. */
  rate?: number;
  /** The broker's pid, to read its CPU time over the measured window (0: unknown). */
  brokerPid: number;
}

export interface IdleSpec {
  mode: 'idle';
  host: string;
  port: number;
  connections: number;
  sourceAddresses: string[];
  /** Connection attempts outstanding at once. */
  concurrency: number;
  keepaliveSeconds: number;
  /** The broker's pid, for VmRSS. */
  brokerPid: number;
  timeoutMs: number;
}

export type LoadSpec = ThroughputSpec | IdleSpec;

export interface LatencyResult {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface ThroughputResult {
  mode: 'throughput';
  /** Messages published in the measured window, per second. */
  publishRate: number;
  /** Messages acknowledged to the publishers (QoS 1/2) in the measured window, per second. */
  ackRate: number;
  /** Deliveries to all subscribers in the measured window, per second. */
  deliveryRate: number;
  /** Payload MiB/s delivered in the measured window. */
  deliveryMiBps: number;
  sent: number;
  correctness: Correctness;
  /** Publisher messages still unacknowledged after the drain. */
  unacknowledged: number;
  latencyUs?: LatencyResult;
  /** CPU the broker process used over the measured window, in cores (NaN if unknown). */
  brokerCpu: number;
  /** CPU the generator used over the measured window, in cores. */
  generatorCpu: number;
  errors: string[];
}

export interface IdleResult {
  mode: 'idle';
  connected: number;
  failed: number;
  connectsPerSec: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
  rssPerConnectionBytes: number;
  errors: string[];
}

export type LoadResult = ThroughputResult | IdleResult;
