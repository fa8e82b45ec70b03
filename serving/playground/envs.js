/* gymnasium's CartPole-v1 and Acrobot-v1 in the page, step for step.
 *
 * The equations, constants, order of operations and float32 observations are gymnasium
 * 1.x's (gymnasium/envs/classic_control/cartpole.py and acrobot.py). reset(seed) draws the
 * start state as gymnasium does: numpy's Generator(PCG64(SeedSequence(seed))).uniform, so a
 * seed gives the same episode as `env.reset(seed=seed)` in Python (and as
 * `python -m serving query play --seed`). sin and cos are correctly rounded (double-double
 * evaluation), as glibc's almost always are: V8's Math.sin and Math.cos are an ulp off for
 * about 2% of arguments, and an ulp is enough to change a policy's action later on.
 *
 * Plain script (no modules, no build step): defines `window.Envs`.
 */
(function (global) {
  "use strict";

  // ---------------------------------------------------------------- double-double arithmetic
  // A number is a pair [hi, lo] with |lo| <= ulp(hi) / 2 (Dekker 1971; Hida, Li and Bailey's QD).
  function twoSum(a, b) {
    const s = a + b, v = s - a;
    return [s, (a - (s - v)) + (b - v)];
  }
  function quickTwoSum(a, b) {
    const s = a + b;
    return [s, b - (s - a)];
  }
  function split(a) {
    const c = 134217729 * a;  // 2^27 + 1
    const hi = c - (c - a);
    return [hi, a - hi];
  }
  function twoProd(a, b) {
    const p = a * b, [ah, al] = split(a), [bh, bl] = split(b);
    return [p, ((ah * bh - p) + ah * bl + al * bh) + al * bl];
  }
  function ddAdd(a, b) {
    let [s1, s2] = twoSum(a[0], b[0]);
    const [t1, t2] = twoSum(a[1], b[1]);
    [s1, s2] = quickTwoSum(s1, s2 + t1);
    return quickTwoSum(s1, s2 + t2);
  }
  function ddMul(a, b) {
    const [p, e] = twoProd(a[0], b[0]);
    return quickTwoSum(p, e + (a[0] * b[1] + a[1] * b[0]));
  }
  function ddDivInt(a, n) {  // a / n for a small integer n
    const q1 = a[0] / n, [p, e] = twoProd(q1, n);
    const q2 = (((a[0] - p) - e) + a[1]) / n;
    return quickTwoSum(q1, q2);
  }

  // pi/2 as three doubles: 1.5707963267948966 + 6.123233995736766e-17 - 1.4973849048591698e-33
  const PIO2 = [1.5707963267948966, 6.123233995736766e-17, -1.4973849048591698e-33];

  /** x = k pi/2 + r with |r| <= pi/4: [k mod 4, r as double-double]. */
  function reduce(x) {
    const k = Math.round(x / PIO2[0]);
    if (k === 0) return [0, [x, 0]];
    let r = ddAdd(twoSum(x, 0), twoProd(-k, PIO2[0]));  // exact: the product and the sum are exact pairs
    r = ddAdd(r, twoProd(-k, PIO2[1]));
    r = ddAdd(r, [-k * PIO2[2], 0]);
    return [((k % 4) + 4) % 4, r];
  }

  /** sin(r) and cos(r) for |r| <= pi/4 by their Taylor series in double-double. */
  function sinCosSeries(r) {
    const r2 = ddMul(r, r);
    let sin = r, cos = [1, 0];
    let sinTerm = r, cosTerm = [1, 0];
    for (let n = 1; n < 30; n++) {
      sinTerm = ddDivInt(ddMul(sinTerm, r2), -(2 * n) * (2 * n + 1));  // (-1)^n r^(2n+1) / (2n+1)!
      cosTerm = ddDivInt(ddMul(cosTerm, r2), -(2 * n - 1) * (2 * n));  // (-1)^n r^(2n) / (2n)!
      sin = ddAdd(sin, sinTerm);
      cos = ddAdd(cos, cosTerm);
      if (Math.abs(cosTerm[0]) < 1e-40) break;
    }
    return [sin, cos];
  }

  /** Correctly rounded sin (to nearest) for |x| < 2^30. */
  function sin(x) {
    if (x === 0 || !Number.isFinite(x)) return Math.sin(x);
    const [q, r] = reduce(x), [s, c] = sinCosSeries(r);
    return [s[0] + s[1], c[0] + c[1], -(s[0] + s[1]), -(c[0] + c[1])][q];
  }

  /** Correctly rounded cos (to nearest) for |x| < 2^30. */
  function cos(x) {
    if (!Number.isFinite(x)) return Math.cos(x);
    const [q, r] = reduce(x), [s, c] = sinCosSeries(r);
    return [c[0] + c[1], -(s[0] + s[1]), -(c[0] + c[1]), s[0] + s[1]][q];
  }

  // ---------------------------------------------------------------- numpy's random numbers
  // SeedSequence (numpy/random/bit_generator.pyx) and PCG64 (XSL-RR 128/64; pcg64.h), as
  // gymnasium.utils.seeding.np_random builds them: Generator(PCG64(SeedSequence(seed))).
  const MASK64 = (1n << 64n) - 1n, MASK128 = (1n << 128n) - 1n;
  const PCG_MULTIPLIER = (2549297995355413924n << 64n) + 4865540595714422341n;

  function hashMix(value, hash) {  // hash = {value: uint32}, updated in place
    value = (value ^ hash.value) >>> 0;
    hash.value = Math.imul(hash.value, 0x931e8875) >>> 0;
    value = Math.imul(value, hash.value) >>> 0;
    return (value ^ (value >>> 16)) >>> 0;
  }
  function mix(x, y) {
    const result = (Math.imul(0xca01f9dd, x) - Math.imul(0x4973f715, y)) >>> 0;
    return (result ^ (result >>> 16)) >>> 0;
  }

  /** numpy.random.SeedSequence(seed).pool for a non-negative integer seed: 4 uint32 words. */
  function seedPool(seed) {
    let n = BigInt(seed);
    if (n < 0n) throw new Error(`seed must be a non-negative integer, got ${seed}`);
    const entropy = [];
    do { entropy.push(Number(n & 0xffffffffn)); n >>= 32n; } while (n > 0n);
    const hash = {value: 0x43b0d7e5}, pool = [0, 0, 0, 0];
    for (let i = 0; i < 4; i++) pool[i] = hashMix(i < entropy.length ? entropy[i] : 0, hash);
    for (let src = 0; src < 4; src++) {
      for (let dst = 0; dst < 4; dst++) {
        if (src !== dst) pool[dst] = mix(pool[dst], hashMix(pool[src], hash));
      }
    }
    for (let src = 4; src < entropy.length; src++) {
      for (let dst = 0; dst < 4; dst++) pool[dst] = mix(pool[dst], hashMix(entropy[src], hash));
    }
    return pool;
  }

  /** SeedSequence.generate_state(words, uint64) as BigInts. */
  function generateState(pool, words) {
    const hash = 0x8b51f9dd, out = [];
    let constant = hash;
    const words32 = [];
    for (let i = 0; i < 2 * words; i++) {
      let value = (pool[i % pool.length] ^ constant) >>> 0;
      constant = Math.imul(constant, 0x58f38ded) >>> 0;
      value = Math.imul(value, constant) >>> 0;
      words32.push((value ^ (value >>> 16)) >>> 0);
    }
    for (let i = 0; i < words; i++) out.push((BigInt(words32[2 * i + 1]) << 32n) | BigInt(words32[2 * i]));
    return out;
  }

  /** numpy.random.Generator(PCG64(SeedSequence(seed))): next64, random (a double in [0, 1)), uniform. */
  class Generator {
    constructor(seed) {
      const [s0, s1, i0, i1] = generateState(seedPool(seed), 4);
      const initState = (s0 << 64n) | s1, initSeq = (i0 << 64n) | i1;
      this.inc = ((initSeq << 1n) | 1n) & MASK128;
      this.state = 0n;
      this.step();
      this.state = (this.state + initState) & MASK128;
      this.step();
    }
    step() {
      this.state = (this.state * PCG_MULTIPLIER + this.inc) & MASK128;
    }
    next64() {
      this.step();
      const rotation = this.state >> 122n;
      const x = ((this.state >> 64n) ^ this.state) & MASK64;
      return ((x >> rotation) | (x << ((64n - rotation) & 63n))) & MASK64;
    }
    random() {
      return Number(this.next64() >> 11n) * (1.0 / 9007199254740992.0);
    }
    uniform(low, high, size) {
      const range = high - low;
      return Array.from({length: size}, () => low + range * this.random());
    }
  }

  // ---------------------------------------------------------------- CartPole-v1
  const CARTPOLE = {
    gravity: 9.8, masscart: 1.0, masspole: 0.1, length: 0.5, forceMag: 10.0, tau: 0.02,
    xThreshold: 2.4, thetaThreshold: 12 * 2 * Math.PI / 360, maxSteps: 500,
  };
  CARTPOLE.totalMass = CARTPOLE.masspole + CARTPOLE.masscart;
  CARTPOLE.polemassLength = CARTPOLE.masspole * CARTPOLE.length;

  /** gymnasium's CartPole-v1 with its TimeLimit of 500 steps; euler integration; float64 state. */
  class CartPole {
    constructor() {
      this.id = "CartPole-v1";
      this.actions = ["push left", "push right"];
      this.state = null;
      this.steps = 0;
    }
    reset(seed) {
      this.setState(new Generator(seed).uniform(-0.05, 0.05, 4));
      return this.observation();
    }
    setState(state) {
      this.state = Array.from(state, Number);
      this.steps = 0;
      this.stepsBeyondTerminated = null;
    }
    observation() {
      return this.state.map(Math.fround);
    }
    step(action) {
      const c = CARTPOLE;
      let [x, xDot, theta, thetaDot] = this.state;
      const force = action === 1 ? c.forceMag : -c.forceMag;
      const costheta = cos(theta), sintheta = sin(theta);
      const temp = (force + c.polemassLength * (thetaDot * thetaDot) * sintheta) / c.totalMass;
      const thetaacc = (c.gravity * sintheta - costheta * temp) /
        (c.length * (4.0 / 3.0 - c.masspole * (costheta * costheta) / c.totalMass));
      const xacc = temp - c.polemassLength * thetaacc * costheta / c.totalMass;
      x = x + c.tau * xDot;
      xDot = xDot + c.tau * xacc;
      theta = theta + c.tau * thetaDot;
      thetaDot = thetaDot + c.tau * thetaacc;
      this.state = [x, xDot, theta, thetaDot];
      this.steps += 1;
      const terminated = x < -c.xThreshold || x > c.xThreshold ||
        theta < -c.thetaThreshold || theta > c.thetaThreshold;
      let reward = 1.0;
      if (terminated && this.stepsBeyondTerminated !== null) {
        this.stepsBeyondTerminated += 1;
        reward = 0.0;
      } else if (terminated) {
        this.stepsBeyondTerminated = 0;
      }
      return {observation: this.observation(), reward, terminated, truncated: this.steps >= c.maxSteps};
    }
  }

  // ---------------------------------------------------------------- Acrobot-v1
  const ACROBOT = {
    dt: 0.2, l1: 1.0, l2: 1.0, m1: 1.0, m2: 1.0, lc1: 0.5, lc2: 0.5, moi: 1.0,
    maxVel1: 4 * Math.PI, maxVel2: 9 * Math.PI, torques: [-1.0, 0.0, 1.0], maxSteps: 500,
  };

  /** gymnasium's Acrobot-v1 ("book" dynamics, no torque noise) with its TimeLimit of 500 steps. */
  class Acrobot {
    constructor() {
      this.id = "Acrobot-v1";
      this.actions = ["torque -1", "torque 0", "torque +1"];
      this.state = null;
      this.steps = 0;
    }
    reset(seed) {
      this.setState(new Generator(seed).uniform(-0.1, 0.1, 4).map(Math.fround));  // .astype(np.float32)
      return this.observation();
    }
    setState(state) {
      this.state = Array.from(state, Number);
      this.steps = 0;
    }
    observation() {
      const s = this.state;
      return [cos(s[0]), sin(s[0]), cos(s[1]), sin(s[1]), s[2], s[3]].map(Math.fround);
    }
    static dsdt(s) {  // s = [theta1, theta2, dtheta1, dtheta2, torque]
      const {m1, m2, l1, lc1, lc2, moi} = ACROBOT, g = 9.8;
      const [theta1, theta2, dtheta1, dtheta2, a] = s;
      const d1 = m1 * (lc1 * lc1) + m2 * ((l1 * l1) + (lc2 * lc2) + 2 * l1 * lc2 * cos(theta2)) + moi + moi;
      const d2 = m2 * ((lc2 * lc2) + l1 * lc2 * cos(theta2)) + moi;
      const phi2 = m2 * lc2 * g * cos(theta1 + theta2 - Math.PI / 2.0);
      const phi1 = -m2 * l1 * lc2 * (dtheta2 * dtheta2) * sin(theta2) -
        2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin(theta2) +
        (m1 * lc1 + m2 * l1) * g * cos(theta1 - Math.PI / 2) + phi2;
      const ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * (dtheta1 * dtheta1) * sin(theta2) - phi2) /
        (m2 * (lc2 * lc2) + moi - (d2 * d2) / d1);
      const ddtheta1 = -(d2 * ddtheta2 + phi1) / d1;
      return [dtheta1, dtheta2, ddtheta1, ddtheta2, 0.0];
    }
    step(action) {
      const dt = ACROBOT.dt, dt2 = dt / 2.0;
      const y0 = [...this.state, ACROBOT.torques[action]];
      const along = (k, h) => y0.map((v, i) => v + h * k[i]);
      const k1 = Acrobot.dsdt(y0);
      const k2 = Acrobot.dsdt(along(k1, dt2));
      const k3 = Acrobot.dsdt(along(k2, dt2));
      const k4 = Acrobot.dsdt(along(k3, dt));
      const ns = y0.map((v, i) => v + dt / 6.0 * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i])).slice(0, 4);
      ns[0] = wrap(ns[0], -Math.PI, Math.PI);
      ns[1] = wrap(ns[1], -Math.PI, Math.PI);
      ns[2] = Math.min(Math.max(ns[2], -ACROBOT.maxVel1), ACROBOT.maxVel1);
      ns[3] = Math.min(Math.max(ns[3], -ACROBOT.maxVel2), ACROBOT.maxVel2);
      this.state = ns;
      this.steps += 1;
      const terminated = -cos(ns[0]) - cos(ns[1] + ns[0]) > 1.0;
      return {observation: this.observation(), reward: terminated ? 0.0 : -1.0, terminated,
              truncated: this.steps >= ACROBOT.maxSteps};
    }
  }

  function wrap(x, m, M) {
    const diff = M - m;
    while (x > M) x = x - diff;
    while (x < m) x = x + diff;
    return x;
  }

  /** The environment whose observations have this many numbers (4: CartPole, 6: Acrobot). */
  const BY_OBSERVATION_SIZE = {4: CartPole, 6: Acrobot};

  global.Envs = {sin, cos, seedPool, generateState, Generator, CartPole, Acrobot, BY_OBSERVATION_SIZE};
})(typeof window !== "undefined" ? window : globalThis);
