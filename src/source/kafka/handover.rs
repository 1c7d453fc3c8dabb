//! The handover state of a stream: what the next owner of partition `p`
//! (of every subscribed topic) needs to continue exactly where this
//! instance stopped — no open join lost, no request judged twice.
//!
//! The next owner starts each topic at its `offset` (the first record of
//! the oldest open join or remembered closed key of that topic, or the next
//! record) with the watermark `wm_at_offset`, and re-reads every topic up
//! to its `processed` mark with every effect suppressed: what the previous
//! owner counted, closed and produced there is done. It then raises the
//! watermark to `wm_processed` (again suppressed) and carries on live.
//!
//! Written as the offset commit's metadata of each of the stream's topic
//! partitions and as a record of the handover topic (docs/design.md,
//! "Handover"). Text, so an operator can read it with any Kafka tool:
//! `accord2;wo=WC;wp=WM;t=TOPIC,o=C,p=M;t=...` (topic names are
//! `[a-zA-Z0-9._-]`, so `;`, `,` and `=` never occur in them). The single
//! topic form of earlier versions, `accord1;o=C;wo=WC;p=M;wp=WM`, is read
//! too.

/// One topic's marks within a stream's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMark {
    pub topic: String,
    /// Where the next owner starts reading this topic.
    pub offset: i64,
    /// The last offset of this topic the previous owner processed
    /// (`offset - 1` or lower: nothing to re-read).
    pub processed: i64,
}

/// A stream's handover state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    /// The watermark right after the earliest needed record was judged.
    pub wm_at_offset: i64,
    /// The previous owner's last watermark (wall-clock advances included).
    pub wm_processed: i64,
    pub topics: Vec<TopicMark>,
}

impl StreamState {
    const TAG: &'static str = "accord2";
    const TAG_V1: &'static str = "accord1";

    pub fn encode(&self) -> String {
        let mut s = format!("{};wo={};wp={}", Self::TAG, self.wm_at_offset, self.wm_processed);
        for t in &self.topics {
            s.push_str(&format!(";t={},o={},p={}", t.topic, t.offset, t.processed));
        }
        s
    }

    /// Parses a state; `committed_topic` names the topic of a version 1
    /// state (it did not say). `None` for anything else: a commit made by
    /// another tool, or garbage.
    pub fn decode(s: &str, committed_topic: &str) -> Option<StreamState> {
        let mut it = s.split(';');
        match it.next()? {
            Self::TAG => {
                let mut st = StreamState { wm_at_offset: i64::MIN, wm_processed: i64::MIN, topics: Vec::new() };
                for part in it {
                    let (k, v) = part.split_once('=')?;
                    match k {
                        "wo" => st.wm_at_offset = v.parse().ok()?,
                        "wp" => st.wm_processed = v.parse().ok()?,
                        "t" => st.topics.push(Self::topic_mark(v)?),
                        _ => {}
                    }
                }
                (!st.topics.is_empty() && st.topics.iter().all(|t| t.offset >= 0)).then_some(st)
            }
            Self::TAG_V1 => {
                let mut mark = TopicMark { topic: committed_topic.to_string(), offset: -1, processed: -1 };
                let mut st = StreamState { wm_at_offset: i64::MIN, wm_processed: i64::MIN, topics: Vec::new() };
                for kv in it {
                    let (k, v) = kv.split_once('=')?;
                    let v: i64 = v.parse().ok()?;
                    match k {
                        "o" => mark.offset = v,
                        "wo" => st.wm_at_offset = v,
                        "p" => mark.processed = v,
                        "wp" => st.wm_processed = v,
                        _ => {}
                    }
                }
                (mark.offset >= 0).then(|| {
                    st.topics.push(mark);
                    st
                })
            }
            _ => None,
        }
    }

    /// `topic,o=C,p=M`
    fn topic_mark(v: &str) -> Option<TopicMark> {
        let mut parts = v.split(',');
        let topic = parts.next()?.to_string();
        let (mut offset, mut processed) = (None, None);
        for p in parts {
            let (k, v) = p.split_once('=')?;
            match k {
                "o" => offset = Some(v.parse().ok()?),
                "p" => processed = Some(v.parse().ok()?),
                _ => {}
            }
        }
        (!topic.is_empty()).then_some(TopicMark { topic, offset: offset?, processed: processed? })
    }

    /// The marks of `topic`, if the state has them.
    pub fn topic(&self, topic: &str) -> Option<&TopicMark> {
        self.topics.iter().find(|t| t.topic == topic)
    }

    /// How far the stream had got: processed marks only grow, so of two
    /// states of one stream the newer has the larger progress.
    pub fn progress(&self) -> i128 {
        self.topics.iter().map(|t| i128::from(t.processed) + 1).sum()
    }

    /// Keeps the newer of two states of one stream.
    pub fn newest(a: Option<StreamState>, b: StreamState) -> StreamState {
        match a {
            Some(a) if a.progress() >= b.progress() => a,
            _ => b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn state() -> StreamState {
        StreamState {
            wm_at_offset: 1_795_168_800_000,
            wm_processed: -5,
            topics: vec![
                TopicMark { topic: "web.decisions".into(), offset: 10, processed: 42 },
                TopicMark { topic: "backend-decisions_2".into(), offset: 0, processed: -1 },
            ],
        }
    }

    #[test]
    fn round_trip_and_text_an_operator_can_read() {
        let s = state();
        let text = s.encode();
        assert_eq!(text, "accord2;wo=1795168800000;wp=-5;t=web.decisions,o=10,p=42;t=backend-decisions_2,o=0,p=-1");
        assert_eq!(StreamState::decode(&text, "x"), Some(s));
    }

    #[test]
    fn reads_the_single_topic_form_of_earlier_versions() {
        let s = StreamState::decode("accord1;o=7;wo=100;p=9;wp=200", "decisions").unwrap();
        assert_eq!(s.wm_at_offset, 100);
        assert_eq!(s.wm_processed, 200);
        assert_eq!(s.topics, [TopicMark { topic: "decisions".into(), offset: 7, processed: 9 }]);
    }

    #[test]
    fn anything_else_is_not_a_state() {
        for s in
            ["", "hello", "accord2", "accord2;wo=1;wp=2", "accord2;t=a,o=x,p=1", "accord2;t=a,o=-1,p=1", "accord1;p=3"]
        {
            assert_eq!(StreamState::decode(s, "t"), None, "{s:?}");
        }
    }

    #[test]
    fn the_newest_state_has_the_most_progress() {
        let old = state();
        let mut new = state();
        new.topics[1].processed = 3;
        assert_eq!(StreamState::newest(Some(old.clone()), new.clone()), new);
        assert_eq!(StreamState::newest(Some(new.clone()), old), new);
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_round_trips(
            wo in any::<i64>(), wp in any::<i64>(),
            topics in prop::collection::vec(("[a-zA-Z0-9._-]{1,20}", 0i64..i64::MAX, -1i64..i64::MAX), 1..5),
            junk in ".{0,40}",
        ) {
            let s = StreamState {
                wm_at_offset: wo,
                wm_processed: wp,
                topics: topics.into_iter().map(|(topic, offset, processed)| TopicMark { topic, offset, processed }).collect(),
            };
            prop_assert_eq!(StreamState::decode(&s.encode(), "t"), Some(s));
            let _ = StreamState::decode(&junk, "t");
        }
    }
}
