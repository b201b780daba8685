'use strict';
// busbar for Node.js: the public API over the native module (busbar.node,
// built from crates/busbar-node by `npm install`). Types: index.d.ts.

const fs = require('node:fs');
const path = require('node:path');

const native = require(path.join(__dirname, 'busbar.node'));

/** Every `.code` a BusbarError can carry (README.md says what each means). */
const CODES = new Set([
  'TIMEOUT', 'NO_ROUTE', 'FULL', 'TOKEN_MISMATCH', 'DISCONNECTED', 'INVALID_ARGUMENT',
  'ABORTED', 'VERSION_MISMATCH', 'PERMISSION_DENIED', 'BUS_FULL', 'UNTRUSTED_CONTROLLER',
  'NAMESPACE', 'PROTOCOL', 'IO', 'TOO_MANY_OBJECTS', 'WOULD_DEADLOCK', 'TOO_LARGE',
  'PENDING_FULL', 'ENCODE', 'DECODE', 'REGION', 'NOT_A_REQUEST', 'RESPONDER_GONE',
  'BAD_FD', 'CLOSED', 'OUT_OF_RANGE', 'INVALID_STATE', 'EXTERNAL_BUFFERS_NOT_ALLOWED',
  'PANIC', 'NAPI',
]);

/** An error of the bus, with a stable `.code` (see CODES). */
class BusbarError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = 'BusbarError';
    this.code = code;
  }
}

/** A native error as a BusbarError (anything else unchanged). */
function wrap(e) {
  if (e instanceof BusbarError) return e;
  if (e && typeof e.code === 'string' && CODES.has(e.code)) return new BusbarError(e.code, e.message);
  return e;
}

/** Calls `f`, throwing native errors as BusbarErrors. */
function call(f) {
  try {
    return f();
  } catch (e) {
    throw wrap(e);
  }
}

/** Errors that mean the caller passed something wrong: thrown at once. */
const ARGUMENT_CODES = new Set(['INVALID_ARGUMENT', 'BAD_FD', 'CLOSED', 'OUT_OF_RANGE']);

// Constructors users must not call (objects come from join / Region.create / recv).
const KEY = Symbol('busbar.internal');
const NATIVE = Symbol('busbar.native');
const REPLY = Symbol('busbar.reply');
const EVENT = Symbol('busbar.event');
const READABLE = Symbol('busbar.readable');

const RESOLVED = Promise.resolve();

/** How long a receive that found nothing watches the rings before it sleeps, by default (µs). */
const DEFAULT_SPIN_US = 50;
/** The longest a spin holds the event loop at a time (µs). */
const SPIN_SLICE_US = 10;

function checkMillis(v, name) {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || Number.isNaN(v)) throw new TypeError(`${name} must be a number of milliseconds`);
  if (v < 0) throw new BusbarError('INVALID_ARGUMENT', `${name} must be >= 0, not ${v}`);
  return v === Infinity ? undefined : v;
}

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new TypeError('data must be a Buffer, a Uint8Array or a string');
}

function checkFormat(format) {
  if (format === undefined) return 0;
  if (!Number.isInteger(format) || format < 0 || format > 0xffff) {
    throw new TypeError('format must be an integer from 0 to 65535');
  }
  return format;
}

/** A received file descriptor: yours to use, `take()` or `close()`. */
class Fd {
  #fd;
  constructor(fd, key) {
    if (key !== KEY) throw new TypeError('Fd objects come with received messages');
    this.#fd = fd;
  }
  /** The descriptor number (throws once taken or closed). */
  get fd() {
    if (this.#fd < 0) throw new BusbarError('CLOSED', 'the descriptor was taken or closed');
    return this.#fd;
  }
  /** Whether it was taken or closed. */
  get closed() {
    return this.#fd < 0;
  }
  /** Hands the descriptor over: closing it is now the caller's job. */
  take() {
    const fd = this.fd;
    this.#fd = -1;
    return fd;
  }
  /** Closes it now (idempotent). */
  close() {
    if (this.#fd >= 0) {
      const fd = this.#fd;
      this.#fd = -1;
      fs.closeSync(fd);
    }
  }
}

/** A shared memory region. */
class Region {
  #n;
  #buffer;
  constructor(n, key) {
    if (key !== KEY) throw new TypeError('use Region.create(size)');
    this.#n = n;
  }
  /** A new region of `size` bytes, zero-filled, refCount 1. */
  static create(size) {
    if (typeof size !== 'number' || !Number.isInteger(size)) throw new TypeError('size must be an integer');
    if (size < 0) throw new BusbarError('INVALID_ARGUMENT', `size must be >= 0, not ${size}`);
    return new Region(call(() => native.Region.create(size)), KEY);
  }
  /** An ArrayBuffer over the shared memory itself: writes are seen by every holder. */
  get buffer() {
    if (this.#buffer === undefined) this.#buffer = call(() => this.#n.buffer());
    return this.#buffer;
  }
  /** Its length in bytes. */
  get size() {
    return this.#n.size;
  }
  /** Handles to it in all processes (messages in flight included); 0 once closed here. */
  get refCount() {
    return this.#n.refCount;
  }
  /** Whether close() was called. */
  get closed() {
    return this.#n.closed;
  }
  /** Copies `length` bytes from `offset` out (for runtimes without external buffers). */
  read(offset = 0, length = this.size - offset) {
    return call(() => this.#n.read(offset, length));
  }
  /** Copies `data` in at `offset`. */
  write(data, offset = 0) {
    const bytes = toBytes(data);
    call(() => this.#n.write(offset, bytes));
  }
  /** Lets it go now: `buffer` is detached, refCount drops for everyone. Idempotent. */
  close() {
    call(() => this.#n.close(this.#buffer));
    this.#buffer = undefined;
  }
  get [NATIVE]() {
    return this.#n;
  }
}

/** A label expression: parsed from text or built. */
class LabelOp {
  #n;
  constructor(n, key) {
    if (key !== KEY) throw new TypeError('use LabelOp.parse, LabelOp.leaf, LabelOp.true or LabelOp.false');
    this.#n = n;
  }
  static parse(text) {
    if (typeof text !== 'string') throw new TypeError('a label expression is a string');
    return new LabelOp(call(() => native.LabelOp.parse(text)), KEY);
  }
  static leaf(name) {
    if (typeof name !== 'string') throw new TypeError('a label name is a string');
    return new LabelOp(native.LabelOp.leaf(name), KEY);
  }
  static true() {
    return new LabelOp(native.LabelOp.true(), KEY);
  }
  static false() {
    return new LabelOp(native.LabelOp.false(), KEY);
  }
  and(other) {
    return new LabelOp(this.#n.and(asOp(other).#n), KEY);
  }
  or(other) {
    return new LabelOp(this.#n.or(asOp(other).#n), KEY);
  }
  not() {
    return new LabelOp(this.#n.not(), KEY);
  }
  /** Whether an endpoint labelled `label` matches. */
  matches(label) {
    return this.#n.matches(labelList(label));
  }
  toString() {
    return this.#n.toString();
  }
}

function asOp(v) {
  if (v instanceof LabelOp) return v;
  if (typeof v === 'string') return LabelOp.leaf(v);
  throw new TypeError('expected a LabelOp or a label name');
}

function labelList(label) {
  if (typeof label === 'string') return [label];
  if (Array.isArray(label) && label.every((s) => typeof s === 'string')) return label;
  throw new TypeError('a label is a string or an array of strings');
}

/** A received message. */
class Message {
  constructor(key, data, format, fds, regions, source, selector, multicast, request) {
    if (key !== KEY) throw new TypeError('messages come from recv()');
    /** The payload. */
    this.data = data;
    /** The BytesMessage format tag. */
    this.format = format;
    /** Descriptors that came with it. */
    this.fds = fds === null || fds.length === 0 ? [] : fds.map((fd) => new Fd(fd, KEY));
    /** Memory regions that came with it. */
    this.regions = regions === null || regions.length === 0 ? [] : regions.map((r) => new Region(r, KEY));
    /** The sending endpoint's id. */
    this.source = source;
    /** The label expression it was sent to. */
    this.selector = selector;
    /** Whether it was multicast. */
    this.multicast = multicast;
    this[REPLY] = request ?? null;
  }
  /** Whether its sender waits for a reply (ep.reply(message, data)). */
  get isRequest() {
    return this[REPLY] !== null;
  }
  /** Closes its descriptors not taken yet and its regions. */
  close() {
    for (const fd of this.fds) fd.close();
    for (const r of this.regions) r.close();
  }
}

/** A message from a native message object (a request's answer). */
function fromNative(raw) {
  return new Message(KEY, raw.data, raw.format, raw.fds, raw.regions, raw.source, raw.selector,
    raw.multicast, raw.request);
}

/** The most messages one takeInto (and one recvBatch) hands over (crates/busbar-node/src/recv.rs, `MAX_BATCH`). */
const MAX_BATCH = 64;
/** u32 words per message in a batch's description (crates/busbar-node/src/recv.rs, `META_WORDS`). */
const META_WORDS = 7;
/** Bytes a slab must have left for takeInto (crates/busbar-node/src/recv.rs, `SLAB_ROOM`). */
const SLAB_ROOM = 8 * 1024 + MAX_BATCH * META_WORDS * 4 + 4;
/**
 * The size of a slab: the memory received payloads up to 8 KiB are copied
 * into, batch after batch, until less than SLAB_ROOM is left. A message
 * kept for long keeps its slab alive, as a Buffer from Node's pool does.
 */
const SLAB_BYTES = 64 * 1024;

/**
 * Where an endpoint's received payloads go: one slab at a time, and what
 * the last batch said its source and selector were (takeInto gives their
 * text only when they change).
 */
class Slab {
  constructor() {
    this.buffer = null;
    this.words = null;
    this.at = 0;
    this.source = '';
    this.selector = '';
  }
}

/**
 * Takes up to `max` messages that are there into `slab`, in a new array
 * (null: none, the descriptor is armed). Small payloads
 * are Buffers over the slab; a batch's description of its messages follows
 * their payloads there (see crates/busbar-node/src/recv.rs, take_into),
 * where the next batch's payloads go.
 */
function takeBatch(handle, slab, max) {
  if (slab.buffer === null || slab.buffer.length - slab.at < SLAB_ROOM) {
    slab.buffer = Buffer.allocUnsafeSlow(SLAB_BYTES);
    slab.words = new Uint32Array(slab.buffer.buffer, slab.buffer.byteOffset, SLAB_BYTES >>> 2);
    slab.at = 0;
  }
  const r = native.takeInto(handle, slab.buffer, slab.at, max);
  if (r === 0) return null;
  let count;
  let metaAt;
  let values = null;
  if (typeof r === 'number') {
    count = r & 127;
    metaAt = r >>> 7;
  } else {
    values = r;
    count = r[0];
    metaAt = r[1];
  }
  slab.at = metaAt;
  const ab = slab.buffer.buffer;
  const words = slab.words;
  const end = (metaAt >>> 2) + count * META_WORDS;
  // A new array per batch: young, so storing young messages in it costs V8
  // no remembered-set entry, as storing them in a long-lived one did.
  const into = [];
  for (let j = metaAt >>> 2; j < end; j += META_WORDS) {
    const own = words[j + 5];
    const data = own === 0 ? Buffer.from(ab, words[j], words[j + 1]) : values[own];
    const tag = words[j + 2];
    const src = words[j + 3];
    if (src !== 0) slab.source = values[src];
    const sel = words[j + 4];
    if (sel !== 0) slab.selector = values[sel];
    const x = words[j + 6];
    into.push(new Message(KEY, data, tag & 0xffff, x === 0 ? null : values[x], x === 0 ? null : values[x + 1],
      slab.source, slab.selector, tag > 0xffff, x === 0 ? null : values[x + 2]));
  }
  return into;
}

// What NativeEndpoint.watch does: stop; watch, keeping the process alive;
// go on watching without keeping it alive (nobody waits now, but a caller
// often comes back within the turn: the descriptor stays in the kernel's
// watch instead of leaving and coming back for every message; a call back
// with nobody waiting stops it).
const WATCH_STOP = 0;
const WATCH_START = 1;
const WATCH_IDLE = 2;

/** Options not given. */
const NO_OPTIONS = Object.freeze({});

/** An empty list of descriptors or regions (never changed). */
const NONE = Object.freeze([]);

const POLICIES = { block: 1, 'drop-newest': 2, 'fail-fast': 3 };

/** Checks send's arguments; everything wrong throws here. */
function sendArgs(to, data, opts) {
  if (opts === undefined || opts === null) opts = {};
  if (typeof opts !== 'object') throw new TypeError('options must be an object');
  let text = '';
  let endpoint = null;
  if (typeof to === 'string') text = to;
  else if (to instanceof LabelOp) text = to.toString();
  else if (to && typeof to === 'object' && typeof to.endpoint === 'string') endpoint = to.endpoint;
  else throw new TypeError('to must be a label expression (string or LabelOp) or { endpoint: id }');
  const fds = opts.fds ?? NONE;
  if (!Array.isArray(fds)) throw new TypeError('fds must be an array');
  const fdNumbers = fds.length === 0 ? NONE : fds.map((fd) => {
    if (fd instanceof Fd) return fd.fd;
    if (!Number.isInteger(fd) || fd < 0) throw new TypeError(`${fd} is not a file descriptor`);
    return fd;
  });
  const regions = opts.regions ?? NONE;
  if (!Array.isArray(regions)) throw new TypeError('regions must be an array');
  const regionHandles = regions.length === 0 ? NONE : regions.map((r) => {
    if (!(r instanceof Region)) throw new TypeError('regions must hold Region objects');
    return r[NATIVE];
  });
  let policy = 0;
  if (opts.backpressure !== undefined) {
    policy = POLICIES[opts.backpressure];
    if (policy === undefined) throw new TypeError("backpressure is 'block', 'drop-newest' or 'fail-fast'");
  }
  return {
    text,
    endpoint,
    bytes: toBytes(data),
    format: checkFormat(opts.format),
    multicast: Boolean(opts.multicast),
    ttl: checkMillis(opts.ttlMs, 'ttlMs') ?? 0,
    fds: fdNumbers,
    regions: regionHandles,
    policy,
    requireReceiver: Boolean(opts.requireReceiver),
  };
}

function abortError(signal) {
  return new BusbarError('ABORTED', 'the receive was aborted', { cause: signal?.reason });
}

function disconnected() {
  return new BusbarError('DISCONNECTED', 'the endpoint is closed');
}

// Endpoints waiting for an outcome stay reachable here (their events need them).
const busy = new Set();

/** One endpoint on a bus. Messages are BytesMessages (format + bytes). */
class Endpoint {
  #n;
  #nextId = 1;
  /** Operations waiting for a native outcome, by id. */
  #pending = new Map();
  /** How many operations and receives wait: while > 0 the endpoint stays reachable (busy). */
  #waiting = 0;
  /**
   * How many of them wait for an event of the native side (sends on the
   * sending thread, requests, replies): while > 0 its thread-safe function
   * keeps the process alive. (A waiting receive keeps it alive through the
   * watch.)
   */
  #events = 0;
  /** recv() callers waiting, in order (while there are some, the native side watches). */
  #receivers = [];
  /** Messages received and not handed out yet: one native batch, from #inboxAt on. */
  #inbox = [];
  #inboxAt = 0;
  /** Sends handed to the sending thread and not yet done. */
  #onThread = 0;
  /**
   * Sends made while some were on the sending thread, waiting here in
   * order (#later), from #backlogAt on: while there are some, #onThread > 0.
   */
  #backlog = [];
  #backlogAt = 0;
  /** The native endpoint's number (native.sendSame, native.takeInto). */
  #handle;
  /** Where received payloads are copied to. */
  #slab = new Slab();
  /** Where the last send went (sendArgs' fields) and the key the native side knows its selector by. */
  #lastTo = null;
  #lastKey = 0;
  #closed = false;
  /** What the native side calls when a message may be there. */
  #onReadable;
  /** How long (µs) a waiting receive watches the rings before it sleeps. */
  #spinUs;
  /** Whether a spin is under way, and when it ends (performance.now()). */
  #spinning = false;
  #spinEnd = 0;
  /** One slice of a spin (bound once). */
  #spinTurn = () => this.#spinSlice();

  constructor(n, key, spinUs = DEFAULT_SPIN_US) {
    if (key !== KEY) throw new TypeError('use busbar.join()');
    this.#n = n;
    this.#spinUs = spinUs;
    this.#handle = n.handle;
    // Held by the native side: it must reach the endpoint but weakly.
    const self = new WeakRef(this);
    this.#onReadable = () => self.deref()?.[READABLE]();
  }

  /**
   * Called by the event loop (#watch) while receivers wait, or while the
   * watch idles after the last one left (then it stops).
   */
  [READABLE]() {
    if (this.#receivers.length === 0) {
      if (!this.#closed) this.#n.watch(WATCH_STOP);
      return;
    }
    this.#drain();
  }

  /** This endpoint's id (16 hex digits). */
  get id() {
    return this.#n.id;
  }

  /** Whether this endpoint hosts the bus controller. */
  get isController() {
    return this.#n.isController;
  }

  /** Whether close() was called. */
  get closed() {
    return this.#closed;
  }

  /** Counts `delta` more waiting operations (`events`: that wait for a native event) or receives. */
  #hold(delta, events = true) {
    const before = this.#waiting;
    this.#waiting += delta;
    if (before === 0 && this.#waiting > 0) busy.add(this);
    else if (before > 0 && this.#waiting === 0) busy.delete(this);
    if (events) {
      const was = this.#events;
      this.#events += delta;
      if (was === 0 && this.#events > 0) this.#n.keepAlive(true);
      else if (was > 0 && this.#events === 0) this.#n.keepAlive(false);
    }
  }

  #wait(kind, extra) {
    const id = this.#nextId++;
    if (this.#nextId > 0xffffffff) this.#nextId = 1;
    let op;
    const promise = new Promise((resolve, reject) => {
      op = { kind, resolve, reject, ...extra };
    });
    this.#pending.set(id, op);
    this.#hold(1);
    return { id, promise, op };
  }

  /**
   * Sends `data` to the endpoints `to` picks. Resolves once the message is
   * in its receivers' queues (or waiting for its ttl); rejects with
   * NO_ROUTE, FULL, ... Bad arguments throw at once.
   */
  send(to, data, opts) {
    const last = this.#lastTo;
    if (last !== null && typeof to === 'string' && to === last.text && last.endpoint === null
      && !this.#closed) {
      // The same place as the last send, given the same way (the options'
      // values as they were then), nothing attached: the short native path,
      // without making the arguments' object.
      const o = opts === undefined || opts === null ? NO_OPTIONS : opts;
      if (typeof o === 'object' && o.fds === undefined && o.regions === undefined
        && o.ttlMs === last.given.ttlMs && o.multicast === last.given.multicast
        && o.backpressure === last.given.backpressure && o.requireReceiver === last.given.requireReceiver) {
        const bytes = toBytes(data);
        const format = checkFormat(o.format);
        if (this.#onThread > 0) return this.#later(last, this.#lastKey, bytes, typeof data === 'string', format);
        const sent = this.#sendSame(bytes, format);
        if (sent !== 0) return sent;
        return this.#sendNative(last, this.#lastKey, bytes, format, NONE, NONE);
      }
    }
    const a = sendArgs(to, data, opts);
    if (this.#closed) return Promise.reject(disconnected());
    const same = last !== null && last.text === a.text && last.endpoint === a.endpoint
      && last.multicast === a.multicast && last.ttl === a.ttl && last.policy === a.policy
      && last.requireReceiver === a.requireReceiver;
    if (!same) {
      // New selector arguments: a new key (the native side makes their selector once).
      const o = opts ?? NO_OPTIONS;
      a.given = { ttlMs: o.ttlMs, multicast: o.multicast, backpressure: o.backpressure, requireReceiver: o.requireReceiver };
      this.#lastTo = a;
      this.#lastKey = this.#lastKey === 0xffffffff ? 1 : this.#lastKey + 1;
    }
    const args = same ? last : a;
    if (a.fds === NONE && a.regions === NONE) {
      if (this.#onThread > 0) return this.#later(args, this.#lastKey, a.bytes, typeof data === 'string', a.format);
      if (same) {
        // The same place again, nothing attached: the short native path.
        const sent = this.#sendSame(a.bytes, a.format);
        if (sent !== 0) return sent;
      }
    } else if (this.#onThread > 0) {
      // Descriptors are copied, and regions counted, now (the caller may
      // close its own after this call): the sends before it go to the
      // sending thread first, in order, then this one.
      this.#backlogToThread();
    }
    return this.#sendNative(args, this.#lastKey, a.bytes, a.format, a.fds, a.regions);
  }

  /**
   * The full native send, with the selector arguments `a` (sendArgs'
   * fields) known by `key`: RESOLVED when it was handed over now; when it
   * has to wait for room (or sends before it are on the sending thread),
   * the sending thread does it, and a promise of its outcome. `entry` (a
   * send from the backlog): its resolve and reject get the outcome, and
   * the answer says only whether it was done now (errors throw).
   */
  #sendNative(a, key, bytes, format, fds, regions, entry) {
    const id = this.#nextId;
    let done;
    try {
      done = this.#n.send(id, key, a.text, a.endpoint, bytes, format, a.multicast, a.ttl,
        fds, regions, a.policy, a.requireReceiver, this.#onThread > 0);
    } catch (e) {
      const err = wrap(e);
      if (entry !== undefined || ARGUMENT_CODES.has(err.code)) throw err;
      return Promise.reject(err);
    }
    if (done) return entry === undefined ? RESOLVED : true;
    this.#nextId = id === 0xffffffff ? 1 : id + 1;
    this.#onThread++;
    this.#hold(1);
    if (entry !== undefined) {
      this.#pending.set(id, { kind: 'send', queued: true, resolve: entry.resolve, reject: entry.reject });
      return false;
    }
    let op;
    const promise = new Promise((resolve, reject) => {
      op = { kind: 'send', queued: true, resolve, reject };
    });
    this.#pending.set(id, op);
    return promise;
  }

  /**
   * A send made while earlier ones wait on the sending thread (their
   * receiver's queue was full): it waits here, in order, with a copy of
   * its bytes (`own`: they are a copy already), until the thread is done;
   * then #pump sends the backlog on the short path, and hands the sending
   * thread only the first one that finds the queue full again. So a
   * sender faster than its receiver pays a thread hop and an event per
   * full queue, not per message.
   */
  #later(a, key, bytes, own, format) {
    let entry;
    const promise = new Promise((resolve, reject) => {
      entry = { a, key, bytes: own ? bytes : Buffer.from(bytes), format, resolve, reject };
    });
    this.#backlog.push(entry);
    return promise;
  }

  /** Sends the backlog once nothing waits on the sending thread, until something does again. */
  #pump() {
    const backlog = this.#backlog;
    while (this.#onThread === 0 && this.#backlogAt < backlog.length && !this.#closed) {
      const e = backlog[this.#backlogAt];
      backlog[this.#backlogAt++] = undefined;
      try {
        if (native.sendSame(this.#handle, e.key, e.bytes, e.format) === 1
          || this.#sendNative(e.a, e.key, e.bytes, e.format, NONE, NONE, e)) {
          e.resolve();
        }
      } catch (err) {
        e.reject(wrap(err));
      }
    }
    if (this.#backlogAt === backlog.length) {
      this.#backlog = [];
      this.#backlogAt = 0;
    }
  }

  /** Hands every send of the backlog to the sending thread, in order (close, an attachment). */
  #backlogToThread() {
    const backlog = this.#backlog;
    for (let i = this.#backlogAt; i < backlog.length; i++) {
      const e = backlog[i];
      try {
        // (Something is on the thread: these go there too.)
        if (this.#sendNative(e.a, e.key, e.bytes, e.format, NONE, NONE, e)) e.resolve();
      } catch (err) {
        e.reject(wrap(err));
      }
    }
    this.#backlog = [];
    this.#backlogAt = 0;
  }

  /**
   * A send of `bytes` to where the last one went, on the short native
   * path: RESOLVED when it was handed over, a rejected promise for an
   * outcome that is an error, 0 when the full send must do it (it would
   * wait for room). An argument that is wrong throws.
   */
  #sendSame(bytes, format) {
    let sent;
    try {
      sent = native.sendSame(this.#handle, this.#lastKey, bytes, format);
    } catch (e) {
      const err = wrap(e);
      if (ARGUMENT_CODES.has(err.code)) throw err;
      return Promise.reject(err);
    }
    return sent === 1 ? RESOLVED : 0;
  }

  /**
   * Sends a request (to one endpoint) and resolves with its answer.
   * `timeoutMs` bounds the whole call (default: none; a responder that
   * leaves fails it at once with RESPONDER_GONE).
   */
  request(to, data, opts) {
    const a = sendArgs(to, data, opts);
    const timeout = checkMillis(opts?.timeoutMs, 'timeoutMs');
    if (this.#closed) return Promise.reject(disconnected());
    const { id, promise } = this.#wait('request');
    try {
      this.#n.request(id, a.text, a.endpoint, a.bytes, a.format, a.ttl, a.fds, a.regions, timeout);
    } catch (e) {
      this.#pending.delete(id);
      this.#hold(-1);
      const err = wrap(e);
      if (ARGUMENT_CODES.has(err.code)) throw err;
      return Promise.reject(err);
    }
    return promise;
  }

  /** Answers a request this endpoint received. */
  reply(message, data, opts) {
    if (!(message instanceof Message)) throw new TypeError('reply takes a received Message');
    if (!message.isRequest) throw new BusbarError('NOT_A_REQUEST', 'the message is not a request: nobody waits for an answer to it');
    const bytes = toBytes(data);
    const format = checkFormat(opts?.format);
    if (this.#closed) return Promise.reject(disconnected());
    // (After the sends made before it, on the sending thread.)
    if (this.#backlogAt < this.#backlog.length) this.#backlogToThread();
    const { id, promise } = this.#wait('send', { queued: false });
    try {
      this.#n.reply(id, message[REPLY], bytes, format);
    } catch (e) {
      this.#pending.delete(id);
      this.#hold(-1);
      return Promise.reject(wrap(e));
    }
    return promise;
  }

  /**
   * The next message. `timeoutMs` (default: wait for ever; 0: only what is
   * there) rejects with TIMEOUT; `signal` aborts (ABORTED) without losing
   * a message: one that came meanwhile goes to the next recv().
   */
  recv(opts) {
    return this.#receive(opts, 0);
  }

  /**
   * The messages that are there, at least one and at most `max` (default
   * and most: 64), in one array: a busy receiver pays one promise per
   * batch instead of one per message. Waits, times out and aborts as
   * recv() does.
   */
  recvBatch(opts) {
    let max = MAX_BATCH;
    if (opts !== undefined && opts !== null && typeof opts === 'object' && opts.max !== undefined) {
      max = opts.max;
      if (!Number.isInteger(max)) throw new TypeError('max must be an integer');
      if (max < 1) throw new BusbarError('INVALID_ARGUMENT', `max must be >= 1, not ${max}`);
      max = Math.min(max, MAX_BATCH);
    }
    return this.#receive(opts, max);
  }

  /** Takes up to `max` messages from the inbox (`max` 0: one message, not in an array). */
  #take(max) {
    const at = this.#inboxAt;
    if (max === 0) {
      const m = this.#inbox[at];
      this.#inbox[at] = undefined;
      this.#inboxAt = at + 1;
      return m;
    }
    const out = this.#inbox.slice(at, at + max);
    this.#inboxAt = at + out.length;
    return out;
  }

  /** How many messages the inbox holds. */
  #held() {
    return this.#inbox.length - this.#inboxAt;
  }

  /** Takes a batch (up to `max`) into the empty inbox: whether there was one. */
  #fill(max) {
    const batch = takeBatch(this.#handle, this.#slab, max);
    if (batch === null) return false;
    this.#inbox = batch;
    this.#inboxAt = 0;
    return true;
  }

  /** A receive (`max` 0: one message); `looked`: the caller just found nothing there. */
  #receive(opts, max, looked = false) {
    if (opts === undefined || opts === null) opts = {};
    if (typeof opts !== 'object') throw new TypeError('options must be an object');
    const timeout = checkMillis(opts.timeoutMs, 'timeoutMs');
    const signal = opts.signal;
    if (signal !== undefined && (signal === null || typeof signal.aborted !== 'boolean')) {
      throw new TypeError('signal must be an AbortSignal');
    }
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (this.#receivers.length === 0 && !looked) {
      if (this.#held() > 0) return Promise.resolve(this.#take(max));
      if (this.#closed) return Promise.reject(disconnected());
      let got;
      try {
        got = this.#fill(max === 0 ? MAX_BATCH : max);
      } catch (e) {
        return Promise.reject(wrap(e));
      }
      if (got) return Promise.resolve(this.#take(max));
      if (timeout === 0) {
        return Promise.reject(new BusbarError('TIMEOUT', 'timed out waiting for a message'));
      }
    }
    if (this.#closed) return Promise.reject(disconnected());
    let waiter;
    const promise = new Promise((resolve, reject) => {
      waiter = { resolve, reject, signal, onAbort: null, timer: null, max };
    });
    if (signal) {
      waiter.onAbort = () => this.#leave(waiter, abortError(signal));
      signal.addEventListener('abort', waiter.onAbort, { once: true });
    }
    if (timeout !== undefined) {
      waiter.timer = setTimeout(() => this.#expire(waiter), timeout);
    }
    this.#receivers.push(waiter);
    this.#hold(1, false);
    if (this.#receivers.length === 1) {
      this.#watch();
      this.#spin();
    }
    return promise;
  }

  /**
   * A receive that found nothing watches the shared-memory rings a while
   * (spinUs) before it sleeps on the event loop: a message that comes
   * meanwhile costs no wake-up on either side. The spin runs in slices of
   * at most SPIN_SLICE_US, one per turn of the event loop (setImmediate),
   * so timers and I/O go on; it stops when no caller waits.
   */
  #spin() {
    if (this.#spinUs === 0 || this.#spinning) return;
    this.#spinning = true;
    this.#spinEnd = performance.now() + this.#spinUs / 1000;
    setImmediate(this.#spinTurn);
  }

  #spinSlice() {
    if (this.#receivers.length === 0 || this.#closed) {
      this.#spinning = false;
      return;
    }
    const left = (this.#spinEnd - performance.now()) * 1000;
    let ready;
    try {
      ready = this.#n.spin(Math.max(0, Math.min(left, SPIN_SLICE_US)));
    } catch {
      ready = true; // #drain's takeInto reports it
    }
    if (ready) {
      this.#spinning = false;
      this.#drain();
    } else if (left > SPIN_SLICE_US) {
      setImmediate(this.#spinTurn);
    } else {
      // Nothing came: sleep (the descriptor the watch polls is armed).
      this.#spinning = false;
    }
  }

  /** Has the event loop call #drain() whenever a message may be there. */
  #watch() {
    try {
      this.#n.watch(WATCH_START, this.#onReadable);
    } catch (e) {
      const err = wrap(e);
      for (const w of this.#receivers.splice(0)) this.#settle(w, err);
    }
  }

  /**
   * Hands what is there to the waiting callers, in order (called by the
   * event loop while they wait); the watch idles when none is left.
   */
  #drain() {
    while (this.#receivers.length > 0 && !this.#closed) {
      if (this.#held() === 0) {
        let got;
        try {
          got = this.#fill(MAX_BATCH);
        } catch (e) {
          // This caller gets the error (a message that did not decode, ...); the next ones go on.
          this.#settle(this.#receivers.shift(), wrap(e));
          continue;
        }
        if (!got) {
          this.#spin();
          break;
        }
      }
      const w = this.#receivers.shift();
      this.#settle(w, null, this.#take(w.max));
    }
    if (this.#receivers.length === 0 && !this.#closed) this.#n.watch(WATCH_IDLE);
  }

  #settle(w, err, message) {
    if (w.signal) w.signal.removeEventListener('abort', w.onAbort);
    if (w.timer !== null) clearTimeout(w.timer);
    this.#hold(-1, false);
    if (err) w.reject(err);
    else w.resolve(message);
  }

  /** Ends waiter `w` with `err` (aborted, timed out): a message it did not take stays for the next. */
  #leave(w, err) {
    const i = this.#receivers.indexOf(w);
    if (i < 0) return;
    this.#receivers.splice(i, 1);
    if (this.#receivers.length === 0 && !this.#closed) this.#n.watch(WATCH_IDLE);
    this.#settle(w, err);
  }

  #expire(w) {
    // A message that came just now (its event not yet handled) is taken first.
    this.#drain();
    this.#leave(w, new BusbarError('TIMEOUT', 'timed out waiting for a message'));
  }

  /** Called with each native outcome. */
  [EVENT](ev) {
    const op = this.#pending.get(ev.id);
    if (op === undefined) {
      // An outcome nobody waits for any more (closed): let its attachments go.
      for (const raw of ev.messages ?? []) fromNative(raw).close();
      return;
    }
    this.#pending.delete(ev.id);
    const err = ev.code ? new BusbarError(ev.code, ev.message) : null;
    if (op.kind === 'send') {
      if (err) op.reject(err);
      else op.resolve();
      if (op.queued) {
        this.#onThread--;
        // (Before the hold is let go: a send of the backlog that goes to
        // the thread again takes it over, without a call to unreference.)
        if (this.#onThread === 0) this.#pump();
      }
      this.#hold(-1);
      return;
    }
    this.#hold(-1);
    // A request's answer.
    if (err) op.reject(err);
    else op.resolve(fromNative(ev.messages[0]));
  }

  /**
   * Messages as they come, until the endpoint is closed: a batch per
   * wake-up, handed out one by one from the inbox (a message is taken only
   * when the loop asks for it, so a loop left with break or throw leaves
   * the rest for the next receive). A message already there costs an
   * already-resolved promise, no generator.
   */
  [Symbol.asyncIterator]() {
    let finished = false;
    const done = () => {
      finished = true;
      return { value: undefined, done: true };
    };
    const next = () => {
      if (finished) return Promise.resolve({ value: undefined, done: true });
      if (this.#closed) return Promise.resolve(done());
      if (this.#receivers.length === 0) {
        // What is there now, taken here: no promise waits.
        if (this.#held() === 0) {
          try {
            this.#fill(MAX_BATCH);
          } catch (e) {
            finished = true;
            return Promise.reject(wrap(e));
          }
        }
        if (this.#held() > 0) return Promise.resolve({ value: this.#take(0), done: false });
      }
      // (With no other caller waiting, it just found nothing there: the
      // receive waits at once.)
      return this.#receive(undefined, 0, this.#receivers.length === 0).then((m) => ({ value: m, done: false }), (e) => {
        if (e.code === 'DISCONNECTED' && this.#closed) return done();
        finished = true;
        throw e;
      });
    };
    return {
      next,
      return: () => Promise.resolve(done()),
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  /** The directory: every endpoint on the bus (this one included). */
  endpoints() {
    if (this.#closed) throw disconnected();
    return call(() => this.#n.endpoints());
  }

  /**
   * Leaves the bus (idempotent). Waiting receives reject with
   * DISCONNECTED; received messages nobody took are closed. Never needed
   * for the process to exit.
   */
  close() {
    if (this.#closed) return;
    // Sends made before, waiting for the sending thread, go to it: they
    // finish, as the ones on it do.
    if (this.#backlogAt < this.#backlog.length) this.#backlogToThread();
    this.#closed = true;
    this.#n.close();
    for (const m of this.#take(MAX_BATCH)) m.close();
    this.#inbox = [];
    this.#inboxAt = 0;
    for (const w of this.#receivers.splice(0)) this.#settle(w, disconnected());
  }
}

/**
 * Joins a bus. Resolves with the endpoint once the bus admitted it;
 * rejects with TIMEOUT, TOKEN_MISMATCH, ...
 */
function join(opts) {
  if (opts === null || typeof opts !== 'object') throw new TypeError('join takes an options object');
  const { bus, label = [], token = 'busbar', timeoutMs, controllerAffinity = true, spinUs = DEFAULT_SPIN_US } = opts;
  if (typeof bus !== 'string') throw new TypeError('bus must be a string');
  if (typeof token !== 'string') throw new TypeError('token must be a string');
  const labels = labelList(label);
  const timeout = checkMillis(timeoutMs, 'timeoutMs');
  if (typeof spinUs !== 'number' || !Number.isFinite(spinUs)) throw new TypeError('spinUs must be a number of microseconds');
  if (spinUs < 0) throw new BusbarError('INVALID_ARGUMENT', `spinUs must be >= 0, not ${spinUs}`);
  // The event function lives as long as the native endpoint: it must not
  // reach the Endpoint (nor the join promise, which holds it) but weakly.
  const holder = { ref: null };
  const onEvent = eventsFor(holder);
  return new Promise((resolve, reject) => {
    call(() => native.join(bus, labels, token, timeout, Boolean(controllerAffinity),
      (code, message, n) => {
        if (code) {
          reject(new BusbarError(code, message));
          return;
        }
        const ep = new Endpoint(n, KEY, spinUs);
        holder.ref = new WeakRef(ep);
        resolve(ep);
      },
      onEvent));
  });
}

/** The function an endpoint's native outcomes are delivered to. */
function eventsFor(holder) {
  return (ev) => {
    const ep = holder.ref?.deref();
    if (ep) ep[EVENT](ev);
  };
}

module.exports = { join, Endpoint, Message, Region, LabelOp, Fd, BusbarError, CODES };
