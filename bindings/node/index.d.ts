// Types of the `busbar` package (index.js). test/types/example.ts is
// checked against them with `tsc --noEmit --strict` in the test run.

/// <reference types="node" />

/** Every code a {@link BusbarError} can carry (README.md says what each means). */
export type ErrorCode =
  | 'TIMEOUT'
  | 'NO_ROUTE'
  | 'FULL'
  | 'TOKEN_MISMATCH'
  | 'DISCONNECTED'
  | 'INVALID_ARGUMENT'
  | 'ABORTED'
  | 'VERSION_MISMATCH'
  | 'PERMISSION_DENIED'
  | 'BUS_FULL'
  | 'UNTRUSTED_CONTROLLER'
  | 'NAMESPACE'
  | 'PROTOCOL'
  | 'IO'
  | 'TOO_MANY_OBJECTS'
  | 'WOULD_DEADLOCK'
  | 'TOO_LARGE'
  | 'PENDING_FULL'
  | 'ENCODE'
  | 'DECODE'
  | 'REGION'
  | 'NOT_A_REQUEST'
  | 'RESPONDER_GONE'
  | 'BAD_FD'
  | 'CLOSED'
  | 'OUT_OF_RANGE'
  | 'INVALID_STATE'
  | 'EXTERNAL_BUFFERS_NOT_ALLOWED'
  | 'PANIC'
  | 'NAPI';

/** The set of every {@link ErrorCode}. */
export const CODES: ReadonlySet<ErrorCode>;

/** An error of the bus, with a stable `.code`. */
export class BusbarError extends Error {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown });
  readonly name: 'BusbarError';
  readonly code: ErrorCode;
}

/** What {@link join} takes. */
export interface JoinOptions {
  /** The bus name (1 to 64 bytes). */
  bus: string;
  /** This endpoint's label: one string or several. Default: none. */
  label?: string | string[];
  /** The bus's shared secret. Default: `'busbar'` (the `busbar` command's default). */
  token?: string;
  /** How long to wait for the bus controller. Default: for ever. */
  timeoutMs?: number;
  /** Whether this endpoint may host the bus controller. Default: true. */
  controllerAffinity?: boolean;
  /**
   * How long (µs) a receive that found nothing watches the shared memory
   * before it sleeps, in slices of at most 10 µs per turn of the event loop.
   * Default: 50; 0: sleep at once.
   */
  spinUs?: number;
}

/** Bytes to send: a string is sent as UTF-8. */
export type Data = Buffer | Uint8Array | ArrayBuffer | string;

/** Where a message goes: a label expression, or exactly one endpoint by id. */
export type Target = string | LabelOp | { endpoint: string };

/** What {@link Endpoint.send} takes. */
export interface SendOptions {
  /** To every matching endpoint instead of exactly one. Default: false. */
  multicast?: boolean;
  /** How long a message nobody matches waits for a match to join. Default: 0 (decide now). */
  ttlMs?: number;
  /** The BytesMessage format tag, 0 to 65535. Default: 0. */
  format?: number;
  /** Descriptors to send: copies travel, the caller keeps its own. */
  fds?: Array<number | Fd>;
  /** Memory regions to send (the receivers map the same memory). */
  regions?: Region[];
  /** What to do when a receiver is full. Default: the endpoint's ('block'). */
  backpressure?: 'block' | 'drop-newest' | 'fail-fast';
  /** A multicast nobody matches fails with NO_ROUTE too. Default: false. */
  requireReceiver?: boolean;
}

/** What {@link Endpoint.request} takes. */
export interface RequestOptions {
  /** See {@link SendOptions.ttlMs}. */
  ttlMs?: number;
  /** See {@link SendOptions.format}. */
  format?: number;
  /** See {@link SendOptions.fds}. */
  fds?: Array<number | Fd>;
  /** See {@link SendOptions.regions}. */
  regions?: Region[];
  /** How long to wait for the answer. Default: for ever. */
  timeoutMs?: number;
}

/** What {@link Endpoint.recv} takes. */
export interface RecvOptions {
  /** How long to wait: 0 takes only what is there. Default: for ever. */
  timeoutMs?: number;
  /** Aborts the wait (ABORTED); a message that came meanwhile is kept for the next recv. */
  signal?: AbortSignal;
}

/** What {@link Endpoint.recvBatch} takes. */
export interface RecvBatchOptions extends RecvOptions {
  /** The most messages to take, 1 to 64. Default: 64. */
  max?: number;
}

/** One endpoint of the directory. */
export interface EndpointInfo {
  id: string;
  label: string[];
  pid: number;
  uid: number;
  isController: boolean;
  /** Bytes written to it that it has not read, as last reported. */
  queuedBytes: number;
}

/** A received file descriptor: closed by `close()` or handed over by `take()`, never by the garbage collector. */
export class Fd {
  private constructor();
  /** The descriptor number (throws CLOSED once taken or closed). */
  readonly fd: number;
  /** Whether it was taken or closed. */
  readonly closed: boolean;
  /** Hands the descriptor over: closing it is now the caller's job. */
  take(): number;
  /** Closes it (idempotent). */
  close(): void;
}

/** A shared memory region. */
export class Region {
  private constructor();
  /** A new region of `size` bytes, zero-filled, refCount 1. */
  static create(size: number): Region;
  /** An ArrayBuffer over the shared memory itself (no copy); detached by close(). */
  readonly buffer: ArrayBuffer;
  /** Its length in bytes. */
  readonly size: number;
  /** Handles to it in all processes, messages in flight included; 0 once closed here. */
  readonly refCount: number;
  /** Whether close() was called. */
  readonly closed: boolean;
  /** Copies bytes out (for runtimes that refuse external buffers). */
  read(offset?: number, length?: number): Buffer;
  /** Copies bytes in at `offset`. */
  write(data: Data, offset?: number): void;
  /** Lets the region go now (idempotent). */
  close(): void;
}

/** A label expression. */
export class LabelOp {
  private constructor();
  /** Parses `renderer & !gpu | codec` (INVALID_ARGUMENT, with a caret, when it does not parse). */
  static parse(text: string): LabelOp;
  /** Labels containing `name`. */
  static leaf(name: string): LabelOp;
  /** Every label. */
  static true(): LabelOp;
  /** No label. */
  static false(): LabelOp;
  and(other: LabelOp | string): LabelOp;
  or(other: LabelOp | string): LabelOp;
  not(): LabelOp;
  /** Whether an endpoint with this label matches. */
  matches(label: string | string[]): boolean;
  /** The expression in the syntax `parse` reads. */
  toString(): string;
}

/** A received message. */
export class Message {
  private constructor();
  /** The payload. */
  readonly data: Buffer;
  /** The BytesMessage format tag. */
  readonly format: number;
  /** Descriptors that came with it: yours to close or take. */
  readonly fds: Fd[];
  /** Memory regions that came with it. */
  readonly regions: Region[];
  /** The sending endpoint's id (16 hex digits). */
  readonly source: string;
  /** The label expression it was sent to. */
  readonly selector: string;
  /** Whether it was multicast. */
  readonly multicast: boolean;
  /** Whether its sender waits for an answer ({@link Endpoint.reply}). */
  readonly isRequest: boolean;
  /** Closes its descriptors not taken yet, and its regions. */
  close(): void;
}

/** One endpoint on a bus. */
export class Endpoint implements AsyncIterable<Message> {
  private constructor();
  /** Its id (16 hex digits). */
  readonly id: string;
  /** Whether it hosts the bus controller. */
  readonly isController: boolean;
  /** Whether close() was called. */
  readonly closed: boolean;
  /** Resolves once the message is in its receivers' queues (or waits for its ttl). */
  send(to: Target, data: Data, options?: SendOptions): Promise<void>;
  /** Sends a request to one endpoint and resolves with its answer. */
  request(to: Target, data: Data, options?: RequestOptions): Promise<Message>;
  /** Answers a request this endpoint received. */
  reply(request: Message, data: Data, options?: { format?: number }): Promise<void>;
  /** The next message. */
  recv(options?: RecvOptions): Promise<Message>;
  /** The messages that are there: at least one (it waits as recv does), at most `max`. */
  recvBatch(options?: RecvBatchOptions): Promise<Message[]>;
  /** Messages as they come, until close(). */
  [Symbol.asyncIterator](): AsyncIterator<Message>;
  /** The directory: every endpoint on the bus, this one included. */
  endpoints(): EndpointInfo[];
  /** Leaves the bus (idempotent); never needed for the process to exit. */
  close(): void;
}

/** Joins a bus. */
export function join(options: JoinOptions): Promise<Endpoint>;
