//! Splitting the watched resources across replicas, as kube-state-metrics does with
//! `--shard`/`--total-shards`: every replica lists what it must to discover resources, then
//! polls, describes and exports only the resources whose stable hash falls on its ordinal.
//! A leaf: names no service and knows neither AWS nor Prometheus.

/// This replica's place among `total` replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    ordinal: u32,
    total: u32,
}

/// A `--shard`/`--total-shards` pair that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    #[error("--total-shards must be at least 1")]
    NoShards,
    #[error("--shard {ordinal} is out of range: with --total-shards {total} it must be between 0 and {}", total - 1)]
    OutOfRange { ordinal: u32, total: u32 },
}

impl Default for Shard {
    fn default() -> Self {
        Self::SINGLE
    }
}

impl Shard {
    /// One replica that owns everything.
    pub const SINGLE: Shard = Shard {
        ordinal: 0,
        total: 1,
    };

    pub fn new(ordinal: u32, total: u32) -> Result<Self, ShardError> {
        if total == 0 {
            return Err(ShardError::NoShards);
        }
        if ordinal >= total {
            return Err(ShardError::OutOfRange { ordinal, total });
        }
        Ok(Self { ordinal, total })
    }

    pub fn ordinal(&self) -> u32 {
        self.ordinal
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    /// This replica's part of `quota_share`: replicas together never exceed the configured share.
    pub fn share_of(&self, quota_share: f64) -> f64 {
        quota_share / f64::from(self.total)
    }

    /// Whether this replica polls and exports the resource `resource_id` of `account_id` in `region`.
    pub fn owns(&self, account_id: &str, region: &str, resource_id: &str) -> bool {
        self.total == 1 || slot(account_id, region, resource_id, self.total) == self.ordinal
    }
}

/// The shard of a resource among `total`: a jump consistent hash (Lamping and Veach, 2014) of a
/// 64-bit FNV-1a hash of the key, its bits mixed by the MurmurHash3 finaliser (FNV alone leaves
/// the high bits of similar names alike, and the jump reads the high bits). Both are fixed algorithms, so every replica and every version
/// agrees; going from M to M-1 shards moves only the resources of the removed shard's share
/// (about 1/M of them) instead of most of them as `hash % total` would.
pub fn slot(account_id: &str, region: &str, resource_id: &str, total: u32) -> u32 {
    let mut key = FNV_OFFSET;
    for part in [account_id, region, resource_id] {
        for byte in part.bytes().chain(std::iter::once(0)) {
            key = (key ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
    }
    jump(mix(key), total)
}

fn mix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn jump(mut key: u64, buckets: u32) -> u32 {
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_out_of_range_are_refused() {
        assert_eq!(Shard::new(0, 0), Err(ShardError::NoShards));
        assert_eq!(
            Shard::new(3, 3),
            Err(ShardError::OutOfRange {
                ordinal: 3,
                total: 3
            })
        );
        assert!(Shard::new(2, 3).is_ok());
    }

    #[test]
    fn replicas_split_the_quota_share_between_them() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3).unwrap()).collect();
        let total: f64 = shards.iter().map(|s| s.share_of(0.5)).sum();
        assert!((total - 0.5).abs() < 1e-12, "{total}");
        assert!((shards[1].share_of(0.5) - 0.5 / 3.0).abs() < 1e-12);
        assert_eq!(Shard::SINGLE.share_of(0.5), 0.5);
    }

    #[test]
    fn every_resource_has_exactly_one_owner() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3).unwrap()).collect();
        for i in 0..300 {
            let id = format!("arn:aws:states:us-east-1:1:stateMachine:sm-{i}");
            let owners = shards
                .iter()
                .filter(|s| s.owns("1", "us-east-1", &id))
                .count();
            assert_eq!(owners, 1, "{id}");
            assert!(Shard::SINGLE.owns("1", "us-east-1", &id));
        }
    }

    #[test]
    fn the_hash_is_stable_and_spreads() {
        // Pinned values (also computed independently of this code): a change of algorithm
        // would silently move resources between replicas of different versions.
        let pinned = [
            (
                "arn:aws:states:us-east-1:123456789012:stateMachine:etl-00",
                [0, 0, 4, 4],
            ),
            ("w-00000000000000001", [1, 1, 1, 9]),
            (
                "arn:aws:appflow:us-east-1:123456789012:flow/flow-03",
                [1, 1, 1, 7],
            ),
        ];
        for (id, want) in pinned {
            let got = [2, 3, 5, 10].map(|m| slot("123456789012", "us-east-1", id, m));
            assert_eq!(got, want, "{id}");
        }
        let mut per = [0usize; 3];
        for i in 0..3000 {
            per[slot("123456789012", "eu-west-1", &format!("flow-{i}"), 3) as usize] += 1;
        }
        for n in per {
            assert!((800..=1200).contains(&n), "{per:?}");
        }
    }

    #[test]
    fn shrinking_moves_only_the_removed_shards_resources() {
        for i in 0..1000 {
            let id = format!("w-{i}");
            let before = slot("1", "r", &id, 3);
            let after = slot("1", "r", &id, 2);
            if before < 2 {
                assert_eq!(before, after, "{id} moved although its shard stayed");
            }
        }
    }
}
