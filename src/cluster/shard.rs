//! Which cells a shard runs, and where it writes them.
//!
//! A study is a set of independent cells, each run at each seed. `--shard I/N` runs the cells
//! that shard `I` of `N` owns: the cell at position `c` among the cells of one seed (in the
//! order the config lists them), at seed `s`, belongs to the shard with `(c + s) mod N = I - 1`.
//! So every shard gets the same number of cells give or take one per seed, the cells of one
//! condition rotate over the shards from seed to seed (an expensive condition is spread rather
//! than piled on one shard), a re-run of a shard does the same cells, and adding seeds leaves
//! every existing cell on the shard that already ran it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::ShardError;

/// The folder, inside a study's results folder, that holds the shards' folders.
pub const SHARDS_DIR: &str = "shards";

/// Shard `index` (counted from 1) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// Shard `index` of `count` (1 <= index <= count).
    pub fn new(index: usize, count: usize) -> Result<Self, ShardError> {
        let spec = format!("{index}/{count}");
        if count == 0 {
            return Err(ShardError::shard(
                &spec,
                "the shard count N must be at least 1",
            ));
        }
        if index == 0 || index > count {
            return Err(ShardError::shard(
                &spec,
                format!("shards are counted from 1 to {count}"),
            ));
        }
        Ok(Shard { index, count })
    }

    /// The shard's number, from 1.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many shards there are.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The shard that owns the cell at position `cell` among the cells of one seed, at `seed`.
    pub fn owner(cell: usize, seed: u64, count: usize) -> Result<Shard, ShardError> {
        let n = count.max(1) as u64;
        let i = ((cell as u64 % n) + seed % n) % n;
        Shard::new(i as usize + 1, count)
    }

    /// Whether this shard runs the cell at position `cell` (among the cells of one seed) at
    /// `seed`.
    pub fn owns(&self, cell: usize, seed: u64) -> bool {
        let n = self.count as u64;
        ((cell as u64 % n) + seed % n) % n == (self.index - 1) as u64
    }

    /// The shard's results folder inside the study folder `root`: `root/shards/I-of-N`.
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(SHARDS_DIR)
            .join(format!("{}-of-{}", self.index, self.count))
    }

    /// The shard whose folder is `dir` (named `I-of-N` by [`Shard::dir`]), if it is one.
    pub fn from_dir(dir: &Path) -> Option<Shard> {
        let name = dir.file_name()?.to_str()?;
        let (i, n) = name.split_once("-of-")?;
        Shard::new(i.parse().ok()?, n.parse().ok()?).ok()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    /// Parses `I/N` (e.g. `2/8`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| ShardError::shard(s, "expected I/N, e.g. 2/8"))?;
        let num = |t: &str, what: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| ShardError::shard(s, format!("{what} '{t}' is not a whole number")))
        };
        Shard::new(num(i, "the shard number I")?, num(n, "the shard count N")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_i_of_n() {
        let s: Shard = "2/8".parse().unwrap();
        assert_eq!((s.index(), s.count()), (2, 8));
        assert_eq!(s.to_string(), "2/8");
        assert_eq!(
            " 1 / 1 ".parse::<Shard>().unwrap(),
            Shard::new(1, 1).unwrap()
        );
        for bad in ["", "3", "0/4", "5/4", "1/0", "a/4", "1/b", "-1/4", "1/2/3"] {
            let e = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(e.starts_with(&format!("shard {bad}")), "{bad}: {e}");
        }
        assert!("0/4"
            .parse::<Shard>()
            .unwrap_err()
            .to_string()
            .contains("counted from 1"));
    }

    #[test]
    fn every_cell_has_exactly_one_owner_and_shards_are_balanced() {
        for count in 1..=7 {
            for cells_per_seed in 1..=9 {
                let seeds = [0u64, 1, 2, 3, 4];
                let shards: Vec<Shard> =
                    (1..=count).map(|i| Shard::new(i, count).unwrap()).collect();
                let mut load = vec![0usize; count];
                for &s in &seeds {
                    let mut per_seed = vec![0usize; count];
                    for c in 0..cells_per_seed {
                        let owners: Vec<_> = shards.iter().filter(|h| h.owns(c, s)).collect();
                        assert_eq!(owners.len(), 1);
                        assert_eq!(*owners[0], Shard::owner(c, s, count).unwrap());
                        per_seed[owners[0].index() - 1] += 1;
                        load[owners[0].index() - 1] += 1;
                    }
                    let (lo, hi) = (per_seed.iter().min(), per_seed.iter().max());
                    assert!(hi.unwrap() - lo.unwrap() <= 1);
                }
                let (lo, hi) = (load.iter().min().unwrap(), load.iter().max().unwrap());
                assert!(hi - lo <= seeds.len(), "{count} shards: {load:?}");
            }
        }
    }

    #[test]
    fn a_condition_rotates_over_shards_and_huge_seeds_do_not_overflow() {
        let owners: Vec<usize> = (0..4)
            .map(|s| Shard::owner(0, s, 4).unwrap().index())
            .collect();
        assert_eq!(owners, vec![1, 2, 3, 4]);
        let s = Shard::owner(usize::MAX, u64::MAX, 3).unwrap();
        assert!(s.owns(usize::MAX, u64::MAX));
    }

    #[test]
    fn shard_folders_live_under_the_study_folder() {
        let s = Shard::new(3, 4).unwrap();
        assert_eq!(s.dir(Path::new("r")), Path::new("r/shards/3-of-4"));
        assert_eq!(Shard::from_dir(&s.dir(Path::new("r"))), Some(s));
        for other in ["r/shards", "r/x-of-4", "r/5-of-4", "r/2-of-"] {
            assert_eq!(Shard::from_dir(Path::new(other)), None, "{other}");
        }
    }
}
