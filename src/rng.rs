//! The random stream behind every draw of a run: the shuffle of the documents, the N(0, 0.08)
//! initial weights and the sampled tokens.
//!
//! Two word sources sit behind one interface. The default is `rand_pcg`'s `Pcg64` seeded with
//! `--seed`; `--rng python` is MT19937 seeded the way CPython's `random.seed(n)` seeds it, so a run
//! can reproduce microgpt.py's own output. Whatever the source, the derived draws follow
//! CPython's `random` module exactly (`random`, `getrandbits`, `_randbelow`, `shuffle`, `gauss`,
//! `choices`); only the 32-bit words differ.

mod mt19937;

pub use mt19937::Mt19937;

use rand::SeedableRng;
use rand_pcg::Pcg64;

/// Which word source a run draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RngKind {
    /// `rand_pcg::Pcg64::seed_from_u64(seed)`: the project's default.
    Pcg,
    /// CPython's MT19937 with `random.seed(seed)`: reproduces microgpt.py's run.
    Python,
}

impl RngKind {
    pub fn name(self) -> &'static str {
        match self {
            RngKind::Pcg => "pcg",
            RngKind::Python => "python",
        }
    }

    pub fn from_name(s: &str) -> Option<RngKind> {
        match s {
            "pcg" => Some(RngKind::Pcg),
            "python" => Some(RngKind::Python),
            _ => None,
        }
    }
}

#[derive(Clone)]
enum Source {
    Pcg(Box<Pcg64>),
    Python(Box<Mt19937>),
}

/// A seeded random stream with CPython's `random` API.
#[derive(Clone)]
pub struct Rng {
    src: Source,
    /// `Random.gauss` makes two normals at a time and keeps the second for the next call.
    gauss_next: Option<f64>,
}

impl Rng {
    pub fn new(kind: RngKind, seed: u64) -> Rng {
        let src = match kind {
            RngKind::Pcg => Source::Pcg(Box::new(Pcg64::seed_from_u64(seed))),
            RngKind::Python => Source::Python(Box::new(Mt19937::from_python_seed(seed))),
        };
        Rng {
            src,
            gauss_next: None,
        }
    }

    /// The default stream: `Pcg64` seeded with `seed`.
    pub fn pcg(seed: u64) -> Rng {
        Rng::new(RngKind::Pcg, seed)
    }

    /// CPython's stream after `random.seed(seed)`.
    pub fn python(seed: u64) -> Rng {
        Rng::new(RngKind::Python, seed)
    }

    /// The next 32-bit word of the source.
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        match &mut self.src {
            Source::Pcg(r) => rand::Rng::next_u32(r.as_mut()),
            Source::Python(r) => r.next_u32(),
        }
    }

    /// `random.random()`: a float in [0, 1) with 53 random bits, from two words
    /// (`(a >> 5) · 2²⁶ + (b >> 6)) / 2⁵³`).
    pub fn random(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67108864.0 + b) * (1.0 / 9007199254740992.0)
    }

    /// `random.getrandbits(k)` for `k <= 64`: words fill the result from the least significant
    /// end, and the last (most significant) word keeps only its top bits.
    pub fn getrandbits(&mut self, k: u32) -> u64 {
        assert!(k <= 64, "getrandbits supports at most 64 bits");
        if k == 0 {
            return 0;
        }
        if k <= 32 {
            return (self.next_u32() >> (32 - k)) as u64;
        }
        let lo = self.next_u32() as u64;
        let hi = (self.next_u32() >> (64 - k)) as u64;
        lo | (hi << 32)
    }

    /// `Random._randbelow(n)`: uniform in `0..n` by rejection on `n.bit_length()` bits.
    pub fn randbelow(&mut self, n: usize) -> usize {
        assert!(n > 0, "randbelow(0)");
        let k = usize::BITS - n.leading_zeros();
        loop {
            let r = self.getrandbits(k) as usize;
            if r < n {
                return r;
            }
        }
    }

    /// `random.shuffle(x)`: Fisher-Yates from the end.
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.randbelow(i + 1);
            x.swap(i, j);
        }
    }

    /// `random.gauss(mu, sigma)`: Box-Muller, keeping the second normal for the next call.
    pub fn gauss(&mut self, mu: f64, sigma: f64) -> f64 {
        let z = match self.gauss_next.take() {
            Some(z) => z,
            None => {
                let x2pi = self.random() * std::f64::consts::TAU;
                let g2rad = (-2.0 * (1.0 - self.random()).ln()).sqrt();
                self.gauss_next = Some(x2pi.sin() * g2rad);
                x2pi.cos() * g2rad
            }
        };
        mu + z * sigma
    }

    /// `random.choices(range(len(weights)), weights=weights)[0]`: one index drawn with
    /// probability proportional to its weight. Like CPython it compares `random() · total`
    /// against the running sums (`bisect` over the cumulative weights, the last index as the
    /// upper bound); it walks the sums instead of storing them, so it allocates nothing.
    pub fn choices(&mut self, weights: &[f64]) -> usize {
        assert!(!weights.is_empty(), "choices from no weights");
        let total: f64 = weights.iter().fold(0.0, |s, &w| s + w);
        let x = self.random() * total;
        let last = weights.len() - 1;
        let mut cum = 0.0;
        for (i, &w) in weights[..last].iter().enumerate() {
            cum += w;
            if x < cum {
                return i;
            }
        }
        last
    }
}

/// splitmix64's output function: a bijection of `u64` that mixes every bit into every other,
/// for seeds derived from a run's seed and a counter (dropout masks, epoch orders).
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
