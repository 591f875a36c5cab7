import { test } from "node:test";
import assert from "node:assert/strict";
import { throttle, Sequencer } from "../throttle.js";

/** A fake clock: time moves only when the test says so. */
function fakeClock() {
  let now = 0;
  let timers = [];
  return {
    now: () => now,
    setTimer: (fn, ms) => {
      const t = { fn, at: now + ms };
      timers.push(t);
      return t;
    },
    clearTimer: (t) => (timers = timers.filter((x) => x !== t)),
    advance(ms) {
      now += ms;
      const due = timers.filter((t) => t.at <= now);
      timers = timers.filter((t) => t.at > now);
      due.forEach((t) => t.fn());
    },
  };
}

test("throttle runs the first call at once and collapses a burst into one trailing call", () => {
  const clock = fakeClock();
  const calls = [];
  const f = throttle((x) => calls.push(x), 100, clock);
  f(1);
  assert.deepEqual(calls, [1]);
  clock.advance(10);
  f(2);
  clock.advance(10);
  f(3);
  assert.deepEqual(calls, [1], "nothing more inside the window");
  clock.advance(80);
  assert.deepEqual(calls, [1, 3], "the trailing call carries the latest arguments");
  clock.advance(500);
  assert.deepEqual(calls, [1, 3]);
});

test("throttle: a steady 60 Hz stream comes out at about the limit", () => {
  const clock = fakeClock();
  let n = 0;
  const f = throttle(() => n++, 100, clock);
  for (let i = 0; i < 60; i++) {
    f();
    clock.advance(1000 / 60);
  }
  clock.advance(200);
  assert.ok(n >= 10 && n <= 11, `expected ~10 calls in one second, got ${n}`);
});

test("throttle.flush sends the pending call now; cancel drops it", () => {
  const clock = fakeClock();
  const calls = [];
  const f = throttle((x) => calls.push(x), 100, clock);
  f("a");
  f("b");
  assert.ok(f.pending());
  f.flush();
  assert.deepEqual(calls, ["a", "b"]);
  clock.advance(10);
  f("c");
  f.cancel();
  clock.advance(1000);
  assert.deepEqual(calls, ["a", "b"]);
  assert.ok(!f.pending());
});

test("Sequencer drops answers older than the one shown", () => {
  const s = new Sequencer();
  const a = s.next();
  const b = s.next();
  assert.ok(s.accept(b));
  assert.ok(!s.accept(a), "a stale answer is dropped");
  assert.ok(s.accept(b), "the same request answered again (new parameters) is shown");
  s.observe(10);
  assert.equal(s.next(), 11, "numbers used elsewhere are skipped");
});
