// The simulator's five patterns (tools/patterns.py), ported simply: offset + scale * (signal +
// noise), from a seeded generator so that a seed gives the same series.
export const PATTERNS = ["linear", "seasonal", "random_walk", "exponential", "cyclical"] as const;
export type Pattern = (typeof PATTERNS)[number];

export type Rng = { uniform(lo: number, hi: number): number; normal(mean: number, sd: number): number };

export function seededRng(seed: number): Rng {
  let a = seed >>> 0;
  const next = () => {
    // mulberry32
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    uniform: (lo, hi) => lo + (hi - lo) * next(),
    normal: (mean, sd) => {
      const u = Math.max(next(), 1e-12);
      return mean + sd * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
    },
  };
}

function std(xs: number[]): number {
  const m = xs.reduce((s, x) => s + x, 0) / xs.length;
  return Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / xs.length);
}

export function generate(pattern: Pattern, length: number, rng: Rng = seededRng(Date.now())): number[] {
  if (!(length >= 1)) throw new Error("length must be at least 1");
  const n = Math.floor(length);
  const t = Array.from({ length: n }, (_, i) => i);
  const sign = rng.uniform(0, 1) < 0.5 ? -1 : 1;
  let sig: number[];
  let noise: number;
  switch (pattern) {
    case "linear": {
      const slope = rng.uniform(0.004, 0.04) * sign;
      sig = t.map((x) => slope * x);
      noise = rng.uniform(0.02, 0.2);
      break;
    }
    case "seasonal": {
      const period = rng.uniform(6, 48);
      const phase = rng.uniform(0, 2 * Math.PI);
      const harmonic = rng.uniform(0, 0.4);
      const trend = rng.uniform(-0.003, 0.003);
      sig = t.map((x) => {
        const w = (2 * Math.PI * x) / period;
        return Math.sin(w + phase) + harmonic * Math.sin(2 * w + 2 * phase) + trend * x;
      });
      noise = rng.uniform(0.02, 0.2);
      break;
    }
    case "random_walk": {
      let acc = 0;
      sig = t.map(() => (acc += rng.normal(0, 0.1)));
      noise = rng.uniform(0, 0.02);
      break;
    }
    case "exponential": {
      const rate = Math.log(rng.uniform(2, 30)) / Math.max(n, 16);
      sig = t.map((x) => Math.exp(rate * x));
      noise = rng.uniform(0.01, 0.05);
      break;
    }
    case "cyclical": {
      const p1 = rng.uniform(40, 120);
      const p2 = rng.uniform(10, 30);
      const a2 = rng.uniform(0.2, 0.6);
      const ph1 = rng.uniform(0, 2 * Math.PI);
      const ph2 = rng.uniform(0, 2 * Math.PI);
      sig = t.map((x) => Math.sin((2 * Math.PI * x) / p1 + ph1) + a2 * Math.sin((2 * Math.PI * x) / p2 + ph2));
      noise = rng.uniform(0.02, 0.15);
      break;
    }
    default:
      throw new Error(`unknown pattern ${String(pattern)}`);
  }
  const amplitude = Math.max(std(sig), 1e-3);
  const scale = 10 ** rng.uniform(-2, 3);
  const offset = scale * rng.uniform(-20, 20);
  return sig.map((s) => offset + scale * (s + rng.normal(0, noise * amplitude)));
}

/** Values typed or pasted by a person: numbers separated by commas, spaces or new lines. */
export function parseValues(text: string): { values: number[]; bad: string[] } {
  const values: number[] = [];
  const bad: string[] = [];
  for (const tok of text.split(/[\s,;]+/).filter(Boolean)) {
    const v = Number(tok);
    if (Number.isFinite(v)) values.push(v);
    else bad.push(tok);
  }
  return { values, bad };
}
