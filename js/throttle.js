// Rate limiting and stale-answer detection. Pure: clocks and timers are injectable.

/**
 * @typedef {object} Clock
 * @property {() => number} now  milliseconds
 * @property {(fn: () => void, ms: number) => any} setTimer
 * @property {(id: any) => void} clearTimer
 */

/** @type {Clock} */
const realClock = {
  now: () => (typeof performance !== "undefined" ? performance.now() : Date.now()),
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (id) => clearTimeout(id),
};

/**
 * Call `fn` at most once every `wait` ms: the first call runs at once, calls
 * during the quiet period collapse into one trailing call with the latest
 * arguments (so the last position of a drag is always sent).
 *
 * @template {any[]} A
 * @param {(...args: A) => void} fn
 * @param {number} wait
 * @param {Partial<Clock>} [clock]
 * @returns {((...args: A) => void) & {flush: () => void, cancel: () => void, pending: () => boolean}}
 */
export function throttle(fn, wait, clock = {}) {
  const c = { ...realClock, ...clock };
  let last = -Infinity;
  /** @type {A | null} */
  let queued = null;
  let timer = null;

  const fire = () => {
    timer = null;
    if (queued === null) return;
    const args = queued;
    queued = null;
    last = c.now();
    fn(...args);
  };

  /** @param {A} args */
  const throttled = (...args) => {
    queued = args;
    const left = wait - (c.now() - last);
    if (left <= 0) {
      if (timer !== null) {
        c.clearTimer(timer);
        timer = null;
      }
      fire();
    } else if (timer === null) {
      timer = c.setTimer(fire, left);
    }
  };
  throttled.flush = () => {
    if (timer !== null) c.clearTimer(timer);
    fire();
  };
  throttled.cancel = () => {
    if (timer !== null) c.clearTimer(timer);
    timer = null;
    queued = null;
  };
  throttled.pending = () => queued !== null;
  return throttled;
}

/**
 * Numbers requests and tells whether an answer is newer than the last one
 * shown, so out-of-order (stale) answers are dropped.
 */
export class Sequencer {
  /** @param {number} [start] the last number already used */
  constructor(start = 0) {
    this.issued = start;
    this.shown = -Infinity;
  }

  /**
   * Note a number used elsewhere (e.g. a request made from Python).
   * @param {number} seq
   */
  observe(seq) {
    if (seq > this.issued) this.issued = seq;
  }

  /** @returns {number} the number for a new request */
  next() {
    this.issued += 1;
    return this.issued;
  }

  /**
   * An answer to the same request may come again (the kernel re-runs the
   * latest request when parameters change): equal numbers are accepted.
   * @param {number} seq the number an answer carries
   * @returns {boolean} true if it should be shown (and it is now the latest shown)
   */
  accept(seq) {
    if (!(seq >= this.shown)) return false;
    this.shown = seq;
    if (seq > this.issued) this.issued = seq;
    return true;
  }
}
