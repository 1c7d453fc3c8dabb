//! Which topic's record a stream judges next, when partition `p` of several
//! topics forms one stream.
//!
//! The rule (docs/reference.md, "Several topics"): the next record judged
//! is the one with the smallest event time among the topics' next records,
//! ties to the topic named first. A topic with nothing fetched is waited
//! for at most `max_topic_idle` — like Kafka Streams' `max.task.idle.ms` —
//! unless it is at the end of its partition (caught up: there is nothing to
//! wait for; known from the end offset of its last fetch, see
//! `judge::Ends`, or from librdkafka's end-of-partition event). When the
//! wait runs out the stream goes on without it, and the topic is reported
//! as overdue (counted in
//! `accord_stream_topic_waits_expired_total`); its records, when they come,
//! are judged in arrival order and may be late if the others moved the
//! watermark past them.
//!
//! While the stream re-reads what its previous owner already judged
//! (handover), every topic's re-read records come before any live record,
//! so the previous owner's joins are rebuilt before anything is reported;
//! that wait has no idle limit (the stream gives up on records that never
//! come after a longer delay, see `Stream::tick`).

/// What the merge needs to know of one topic of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicView {
    /// The topic's next record, fetched: `(event time, offset)`.
    pub head: Option<(i64, i64)>,
    /// The end of the partition was reached and nothing came since.
    pub at_eof: bool,
    /// Since when (milliseconds, any monotonic clock) the topic has had
    /// nothing fetched while the stream had records of other topics.
    pub empty_since_ms: Option<i64>,
    /// Re-reading after a handover: the last offset the previous owner
    /// processed, while records up to it are still to come (`None` once
    /// the topic has read past it, or without a handover).
    pub suppress_through: Option<i64>,
}

/// The merge's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Judge the head of this topic. `overdue` names a topic whose wait
    /// ran out just now (the stream goes on without it).
    Take { topic: usize, overdue: Option<usize> },
    /// Wait for `topic` until `until_ms` (or until something arrives).
    Wait { topic: usize, until_ms: Option<i64> },
    /// Nothing to judge.
    Idle,
}

/// The topic with the smallest key among those that have one, ties to the
/// topic named first: the merge's order.
pub fn first_smallest(keys: impl Iterator<Item = Option<i64>>) -> Option<usize> {
    keys.enumerate().filter_map(|(i, k)| k.map(|k| (k, i))).min().map(|(_, i)| i)
}

/// Decides what a stream judges next at `now_ms`.
pub fn choose(topics: &[TopicView], now_ms: i64, max_idle_ms: i64) -> Choice {
    let replaying = topics.iter().any(|t| t.suppress_through.is_some());
    let eligible = |t: &TopicView| match (t.head, replaying) {
        (None, _) => false,
        (Some(_), false) => true,
        // While any topic re-reads, only re-read records are judged.
        (Some((_, offset)), true) => t.suppress_through.is_some_and(|m| offset <= m),
    };
    let best = first_smallest(topics.iter().map(|t| t.head.filter(|_| eligible(t)).map(|h| h.0)));
    // Who still must be waited for before `best` may go.
    let mut overdue = None;
    for (i, t) in topics.iter().enumerate() {
        if t.head.is_some() && (!replaying || eligible(t)) {
            continue;
        }
        if replaying {
            if t.suppress_through.is_some() && t.head.is_none() {
                // Re-read records still to come from this topic.
                return Choice::Wait { topic: i, until_ms: None };
            }
            continue;
        }
        if t.at_eof {
            continue;
        }
        match t.empty_since_ms {
            Some(since) if now_ms - since >= max_idle_ms => overdue = overdue.or(Some(i)),
            Some(since) if best.is_some() => return Choice::Wait { topic: i, until_ms: Some(since + max_idle_ms) },
            None if best.is_some() => return Choice::Wait { topic: i, until_ms: Some(now_ms + max_idle_ms) },
            _ => {}
        }
    }
    match best {
        Some(topic) => Choice::Take { topic, overdue },
        None => Choice::Idle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(ts: i64, offset: i64) -> TopicView {
        TopicView { head: Some((ts, offset)), ..TopicView::default() }
    }

    fn empty(since: Option<i64>) -> TopicView {
        TopicView { empty_since_ms: since, ..TopicView::default() }
    }

    #[test]
    fn smallest_event_time_first_ties_to_the_topic_named_first() {
        assert_eq!(choose(&[head(5, 0), head(3, 0)], 0, 1000), Choice::Take { topic: 1, overdue: None });
        assert_eq!(choose(&[head(3, 9), head(3, 0)], 0, 1000), Choice::Take { topic: 0, overdue: None });
        assert_eq!(choose(&[head(3, 0)], 0, 1000), Choice::Take { topic: 0, overdue: None });
    }

    #[test]
    fn a_topic_with_nothing_fetched_is_waited_for_up_to_the_idle_limit() {
        assert_eq!(choose(&[head(5, 0), empty(None)], 100, 1000), Choice::Wait { topic: 1, until_ms: Some(1100) });
        assert_eq!(choose(&[head(5, 0), empty(Some(50))], 100, 1000), Choice::Wait { topic: 1, until_ms: Some(1050) });
        assert_eq!(choose(&[head(5, 0), empty(Some(50))], 1050, 1000), Choice::Take { topic: 0, overdue: Some(1) });
    }

    #[test]
    fn a_caught_up_topic_is_not_waited_for() {
        let eof = TopicView { at_eof: true, ..TopicView::default() };
        assert_eq!(choose(&[eof, head(5, 0)], 0, 1000), Choice::Take { topic: 1, overdue: None });
        assert_eq!(choose(&[eof, eof], 0, 1000), Choice::Idle);
        assert_eq!(choose(&[empty(None), empty(None)], 0, 1000), Choice::Idle);
    }

    #[test]
    fn re_read_records_of_every_topic_come_before_live_ones() {
        let replay = |ts, offset, through| TopicView {
            head: Some((ts, offset)),
            suppress_through: Some(through),
            ..TopicView::default()
        };
        // Topic 0's head is live (past its mark), topic 1 still re-reads:
        // the re-read record goes first even with a later event time.
        let live0 = TopicView { head: Some((1, 50)), ..TopicView::default() };
        assert_eq!(choose(&[live0, replay(9, 3, 7)], 0, 1000), Choice::Take { topic: 1, overdue: None });
        // Topic 1 has re-read records to come but none fetched: wait,
        // without an idle limit.
        let pending = TopicView { suppress_through: Some(7), ..TopicView::default() };
        assert_eq!(choose(&[live0, pending], 0, 10), Choice::Wait { topic: 1, until_ms: None });
        assert_eq!(choose(&[replay(5, 1, 2), replay(4, 1, 2)], 0, 10), Choice::Take { topic: 1, overdue: None });
    }
}
