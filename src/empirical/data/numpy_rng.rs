//! NumPy's legacy `RandomState` (MT19937), as far as BREEDS needs it: `RandomState(seed)` with
//! an integer seed, `permutation(n)` and `choice(a, k, replace=False)`. The BREEDS tasks are
//! defined by draws from `RandomState(2)`; reproducing the draws bit for bit gives the published
//! tasks without running Python.
//!
//! NumPy guarantees that the legacy stream never changes: the seeding is MT19937's
//! `init_genrand`, a shuffle swaps `x[i]` with `x[j]`, `j` drawn by masked rejection from
//! `0..=i`, for `i` from `n - 1` down to 1, and `choice` without replacement and without
//! weights is the first `k` entries of `permutation(n)`.

/// MT19937 with NumPy's legacy integer seeding.
#[derive(Clone, Debug)]
pub struct RandomState {
    mt: [u32; 624],
    pos: usize,
}

impl RandomState {
    /// `numpy.random.RandomState(seed)`.
    pub fn new(seed: u32) -> Self {
        let mut mt = [0u32; 624];
        mt[0] = seed;
        for i in 1..624 {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        RandomState { mt, pos: 624 }
    }

    /// The next 32-bit output of MT19937.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= 624 {
            self.twist();
        }
        let mut y = self.mt[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        for i in 0..624 {
            let y = (self.mt[i] & UPPER) | (self.mt[(i + 1) % 624] & LOWER);
            let mut v = self.mt[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.mt[i] = v;
        }
        self.pos = 0;
    }

    /// A uniform integer in `0..=max` (NumPy's `random_interval`: masked rejection sampling).
    pub fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        for s in [1, 2, 4, 8, 16, 32] {
            mask |= mask >> s;
        }
        if max <= u64::from(u32::MAX) {
            loop {
                let v = u64::from(self.next_u32()) & mask;
                if v <= max {
                    return v;
                }
            }
        }
        loop {
            let v = ((u64::from(self.next_u32()) << 32) | u64::from(self.next_u32())) & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// `permutation(n)`: a shuffled `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.interval(i as u64) as usize;
            v.swap(i, j);
        }
        v
    }

    /// `choice(n, k, replace=False)`: `k` distinct indices of `0..n`, in draw order; `None` if
    /// `k > n`.
    pub fn choice_without_replacement(&mut self, n: usize, k: usize) -> Option<Vec<usize>> {
        if k > n {
            return None;
        }
        let mut p = self.permutation(n);
        p.truncate(k);
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values printed by NumPy 2.4 (`np.random.RandomState(2)`); the legacy stream is
    /// frozen, so any NumPy version gives them.
    #[test]
    fn matches_numpy_legacy_stream() {
        let mut r = RandomState::new(2);
        assert_eq!(r.permutation(10), vec![4, 1, 5, 0, 7, 2, 3, 6, 9, 8]);
        let mut r = RandomState::new(2);
        // np.random.RandomState(2).choice(['a','b','c','d','e'], 3, replace=False) == ['c','e','b']
        assert_eq!(r.choice_without_replacement(5, 3), Some(vec![2, 4, 1]));
        assert_eq!(r.choice_without_replacement(2, 3), None);
        // The first raw output of MT19937 seeded with 5489 (the reference implementation's
        // default seed) is 3499211612.
        assert_eq!(RandomState::new(5489).next_u32(), 3_499_211_612);
    }

    #[test]
    #[ignore = "needs python3 with numpy"]
    fn matches_numpy_on_longer_streams() {
        let script = "import numpy as np\nr=np.random.RandomState(7)\n\
                      print(' '.join(str(x) for x in r.permutation(1000)))\n\
                      print(' '.join(str(x) for x in r.choice(50, 20, replace=False)))";
        let out = std::process::Command::new("python3")
            .args(["-c", script])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines().map(|l| {
            l.split_whitespace()
                .map(|x| x.parse::<usize>().unwrap())
                .collect::<Vec<_>>()
        });
        let mut r = RandomState::new(7);
        assert_eq!(r.permutation(1000), lines.next().unwrap());
        assert_eq!(
            r.choice_without_replacement(50, 20).unwrap(),
            lines.next().unwrap()
        );
    }
}
