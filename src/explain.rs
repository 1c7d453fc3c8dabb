//! Explanations of divergent requests in words a release manager reads
//! ("frontend took the new path and api did not advertise v2").
//!
//! A [`Pair`] is one divergence of a request with the direction of a path
//! mismatch; a [`Cause`] is the one story a divergent request is told by,
//! so that counts per cause add up to the divergent requests. Both are
//! computed from a closed join's divergences and records, and both explain
//! themselves given the layer names and the feature's catalog entry.

use crate::catalog::{FeatureSpec, LayerId, LayerSet};
use crate::judge::{Capability, Divergence, DivergenceKind, Facts, RecordPath};

/// How a path mismatch went, when the two layers each took one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Direction {
    /// Not known (same layer, or a layer with records on both paths), or
    /// not a path mismatch.
    Unknown = 0,
    /// The upstream layer took the new path, the downstream one the old.
    UpstreamNew = 1,
    /// The upstream layer took the old path, the downstream one the new.
    DownstreamNew = 2,
}

impl Direction {
    pub const ALL: [Direction; 3] = [Direction::Unknown, Direction::UpstreamNew, Direction::DownstreamNew];
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Unknown => "unknown",
            Direction::UpstreamNew => "upstream_new",
            Direction::DownstreamNew => "downstream_new",
        }
    }
}

/// One divergence of a request, with the direction of a path mismatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pair {
    pub kind: DivergenceKind,
    pub upstream: LayerId,
    pub downstream: LayerId,
    pub direction: Direction,
}

/// The layers whose records took the new path and those whose records
/// took the old one.
fn paths_of(records: &[Facts]) -> (LayerSet, LayerSet) {
    let (mut new, mut old) = (LayerSet::EMPTY, LayerSet::EMPTY);
    for r in records {
        match r.path {
            RecordPath::New => new.insert(r.layer),
            RecordPath::Old => old.insert(r.layer),
            RecordPath::Unknown => {}
        }
    }
    (new, old)
}

impl Pair {
    /// The pair of a divergence, with the direction read from the records.
    pub fn of(d: &Divergence, records: &[Facts]) -> Pair {
        let mut direction = Direction::Unknown;
        if d.kind == DivergenceKind::PathMismatch && d.upstream != d.downstream {
            let (new, old) = paths_of(records);
            let only_new = |l: LayerId| new.contains(l) && !old.contains(l);
            let only_old = |l: LayerId| old.contains(l) && !new.contains(l);
            if only_new(d.upstream) && only_old(d.downstream) {
                direction = Direction::UpstreamNew;
            } else if only_old(d.upstream) && only_new(d.downstream) {
                direction = Direction::DownstreamNew;
            }
        }
        Pair { kind: d.kind, upstream: d.upstream, downstream: d.downstream, direction }
    }

    /// What happened, in words a release manager understands ("frontend
    /// took the new path and api did not advertise v2").
    pub fn explain(&self, layer: &dyn Fn(LayerId) -> String, spec: &FeatureSpec) -> String {
        let (u, d) = (layer(self.upstream), layer(self.downstream));
        let same = self.upstream == self.downstream;
        match self.kind {
            DivergenceKind::PathMismatch => match self.direction {
                Direction::UpstreamNew => format!("{u} took the new path but {d} took the old one"),
                Direction::DownstreamNew => {
                    format!("{u} took the old path but {d} took the new one")
                }
                Direction::Unknown if same => format!(
                    "two {u} records of one request took different paths (e.g. a retried job run by an old and a new {u})"
                ),
                Direction::Unknown => format!("{u} and {d} took different paths"),
            },
            DivergenceKind::ExposureWithoutCapability => {
                let cap = spec.new_capability.as_deref().unwrap_or("the new capability");
                // The pair is (new-path layer, api) in pipeline order.
                let exposed = if u == "api" { &d } else { &u };
                if same {
                    format!("{u} took the new path without advertising {cap}")
                } else {
                    format!("{exposed} took the new path and api did not advertise {cap}")
                }
            }
            DivergenceKind::PayloadVersionMismatch if same => {
                format!("two {u} records of one request carried different job payload versions")
            }
            DivergenceKind::PayloadVersionMismatch => {
                format!("{u} and {d} carried different job payload versions")
            }
            DivergenceKind::SnapshotSkew if same => {
                format!("two {u} records of one request evaluated different flag revisions")
            }
            DivergenceKind::SnapshotSkew => {
                format!("{u} and {d} evaluated different flag revisions")
            }
        }
    }
}

/// The one explanation of a divergent request that the gate and the
/// status page lead with, so that counts per cause add up to the divergent
/// requests (a request with four divergent pairs is one story, not four):
/// a missing capability first (the most specific root cause), then how the
/// layers split between the paths, then payload versions, then flag
/// revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// `exposed` took the new path and the api layer did not advertise the
    /// capability it needs.
    NoCapability {
        exposed: LayerId,
        api: LayerId,
    },
    /// Layers whose records took only the new path, only the old path, or
    /// both.
    PathSplit {
        new: LayerSet,
        old: LayerSet,
        both: LayerSet,
    },
    PayloadVersions {
        upstream: LayerId,
        downstream: LayerId,
    },
    FlagRevisions {
        upstream: LayerId,
        downstream: LayerId,
    },
}

/// "frontend", "frontend and api", "frontend, api and worker".
fn layer_list(set: LayerSet, layer: &dyn Fn(LayerId) -> String) -> String {
    let mut names: Vec<String> = set.iter().map(layer).collect();
    match names.len() {
        0 => String::new(),
        1 => names.remove(0),
        n => format!("{} and {}", names[..n - 1].join(", "), names[n - 1]),
    }
}

impl Cause {
    /// The cause of a closed join's divergences (`None` without any).
    pub fn of(divergences: &[Divergence], records: &[Facts]) -> Option<Cause> {
        if let Some(d) = divergences.iter().find(|d| d.kind == DivergenceKind::ExposureWithoutCapability) {
            // The pair is (new-path layer, api) in pipeline order: the api
            // one is the layer whose record advertised another capability.
            let api_is_up = records.iter().any(|r| r.layer == d.upstream && r.capability == Capability::Differs);
            let (exposed, api) = if api_is_up { (d.downstream, d.upstream) } else { (d.upstream, d.downstream) };
            return Some(Cause::NoCapability { exposed, api });
        }
        if divergences.iter().any(|d| d.kind == DivergenceKind::PathMismatch) {
            let (new, old) = paths_of(records);
            let both = new.intersection(old);
            return Some(Cause::PathSplit { new: new.minus(both), old: old.minus(both), both });
        }
        let first = |k: DivergenceKind| divergences.iter().find(|d| d.kind == k);
        if let Some(d) = first(DivergenceKind::PayloadVersionMismatch) {
            return Some(Cause::PayloadVersions { upstream: d.upstream, downstream: d.downstream });
        }
        first(DivergenceKind::SnapshotSkew)
            .map(|d| Cause::FlagRevisions { upstream: d.upstream, downstream: d.downstream })
    }

    /// In words a release manager understands.
    pub fn explain(&self, layer: &dyn Fn(LayerId) -> String, spec: &FeatureSpec) -> String {
        match *self {
            Cause::NoCapability { exposed, api } => {
                let cap = spec.new_capability.as_deref().unwrap_or("the new capability");
                if exposed == api {
                    format!("{} took the new path without advertising {cap}", layer(api))
                } else {
                    format!("{} took the new path and {} did not advertise {cap}", layer(exposed), layer(api))
                }
            }
            Cause::PathSplit { new, old, both } => {
                let split = if new.is_empty() && old.is_empty() {
                    String::new()
                } else if new.is_empty() {
                    format!("{} took the old path", layer_list(old, layer))
                } else if old.is_empty() {
                    format!("{} took the new path", layer_list(new, layer))
                } else if old.len() <= new.len() {
                    format!(
                        "{} took the old path while {} took the new one",
                        layer_list(old, layer),
                        layer_list(new, layer)
                    )
                } else {
                    format!(
                        "{} took the new path while {} took the old one",
                        layer_list(new, layer),
                        layer_list(old, layer)
                    )
                };
                if both.is_empty() {
                    split
                } else if split.is_empty() && both.len() == 1 {
                    let l = layer_list(both, layer);
                    format!(
                        "two {l} records of one request took different paths (e.g. a retried job run by an old and a new {l})"
                    )
                } else if split.is_empty() {
                    format!("{} each took both paths", layer_list(both, layer))
                } else {
                    format!("{split}, and {} took both", layer_list(both, layer))
                }
            }
            Cause::PayloadVersions { upstream, downstream } => Pair {
                kind: DivergenceKind::PayloadVersionMismatch,
                upstream,
                downstream,
                direction: Direction::Unknown,
            }
            .explain(layer, spec),
            Cause::FlagRevisions { upstream, downstream } => {
                Pair { kind: DivergenceKind::SnapshotSkew, upstream, downstream, direction: Direction::Unknown }
                    .explain(layer, spec)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::features::{FeatureId, Features};

    const L0: LayerId = LayerId::new(0);
    const L1: LayerId = LayerId::new(1);
    const L2: LayerId = LayerId::new(2);

    fn features() -> Features {
        let cat =
            Catalog::parse(std::path::Path::new("c.toml"), include_str!("../tests/conformance/catalog.toml")).unwrap();
        Features::new(std::sync::Arc::new(cat))
    }

    fn facts(layer: LayerId, path: RecordPath, capability: Capability) -> Facts {
        Facts {
            offset: 0,
            ts_ms: 0,
            payload: 0,
            revision: 0,
            layer,
            path,
            degraded: false,
            capability,
            source: 0,
            item: 0,
        }
    }

    #[test]
    fn causes_explain_each_divergent_request_once() {
        let f = features();
        let layer = |l: LayerId| f.catalog().layer_name(l).to_string();
        let spec = f.spec(FeatureId::new(0));
        let set = |ls: &[u8]| ls.iter().map(|&i| LayerId::new(i)).collect::<LayerSet>();
        let split = |new: &[u8], old: &[u8], both: &[u8]| {
            Cause::PathSplit { new: set(new), old: set(old), both: set(both) }.explain(&layer, &spec)
        };
        assert_eq!(
            split(&[0, 1, 3], &[2], &[]),
            "worker took the old path while frontend, api and analytics took the new one"
        );
        assert_eq!(
            split(&[0], &[1, 2, 3], &[]),
            "frontend took the new path while api, worker and analytics took the old one"
        );
        assert_eq!(
            split(&[0, 1], &[2, 3], &[]),
            "worker and analytics took the old path while frontend and api took the new one"
        );
        assert_eq!(
            split(&[], &[], &[2]),
            "two worker records of one request took different paths (e.g. a retried job run by an old and a new worker)"
        );
        assert_eq!(split(&[0, 1], &[], &[2]), "frontend and api took the new path, and worker took both");
        assert_eq!(split(&[], &[], &[1, 2]), "api and worker each took both paths");
        assert_eq!(
            Cause::NoCapability { exposed: L0, api: L1 }.explain(&layer, &spec),
            "frontend took the new path and api did not advertise v2"
        );
        assert_eq!(
            Cause::NoCapability { exposed: L1, api: L1 }.explain(&layer, &spec),
            "api took the new path without advertising v2"
        );
        assert_eq!(
            Cause::FlagRevisions { upstream: L0, downstream: L1 }.explain(&layer, &spec),
            "frontend and api evaluated different flag revisions"
        );
        assert_eq!(
            Cause::PayloadVersions { upstream: L1, downstream: L2 }.explain(&layer, &spec),
            "api and worker carried different job payload versions"
        );
    }

    #[test]
    fn direction_and_cause_are_read_from_the_records() {
        let pm = Divergence { kind: DivergenceKind::PathMismatch, upstream: L0, downstream: L1 };
        let recs = [facts(L0, RecordPath::New, Capability::Unknown), facts(L1, RecordPath::Old, Capability::Differs)];
        assert_eq!(Pair::of(&pm, &recs).direction, Direction::UpstreamNew);
        let flipped =
            [facts(L0, RecordPath::Old, Capability::Unknown), facts(L1, RecordPath::New, Capability::Matches)];
        assert_eq!(Pair::of(&pm, &flipped).direction, Direction::DownstreamNew);
        // A layer on both paths: no direction.
        let both = [recs[0], recs[1], facts(L1, RecordPath::New, Capability::Unknown)];
        assert_eq!(Pair::of(&pm, &both).direction, Direction::Unknown);
        // Another kind never has a direction.
        let skew = Divergence { kind: DivergenceKind::SnapshotSkew, upstream: L0, downstream: L1 };
        assert_eq!(Pair::of(&skew, &recs).direction, Direction::Unknown);

        // A missing capability leads, whichever side the api layer is on.
        let ewc = Divergence { kind: DivergenceKind::ExposureWithoutCapability, upstream: L0, downstream: L1 };
        assert_eq!(Cause::of(&[pm, ewc], &recs), Some(Cause::NoCapability { exposed: L0, api: L1 }));
        let api_up = [facts(L0, RecordPath::Old, Capability::Differs), facts(L1, RecordPath::New, Capability::Unknown)];
        assert_eq!(Cause::of(&[ewc], &api_up), Some(Cause::NoCapability { exposed: L1, api: L0 }));
        assert_eq!(
            Cause::of(&[pm], &both),
            Some(Cause::PathSplit { new: LayerSet::of(L0), old: LayerSet::EMPTY, both: LayerSet::of(L1) })
        );
        assert_eq!(Cause::of(&[skew], &recs), Some(Cause::FlagRevisions { upstream: L0, downstream: L1 }));
        assert_eq!(Cause::of(&[], &recs), None);
    }
}
