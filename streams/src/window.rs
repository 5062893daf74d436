//! Event-time windows: tumbling, hopping and session windows over keyed aggregates, with
//! watermarks and allowed lateness. Pure data structures (no I/O), checkpointed as part of a
//! processor's state.
//!
//! Semantics, as in Flink and Kafka Streams:
//! - a window *fires* once the watermark reaches its end; its result is emitted then;
//! - events for a fired window keep updating it (and re-emit it) until the watermark passes
//!   `end + allowed_lateness`, when the window is *purged*;
//! - an event whose windows are all purged is *late*: it is counted and handed back to the
//!   caller, which routes it to the late-events topic. Nothing is dropped silently.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (event time).
pub type Millis = i64;

/// A half-open interval `[start, end)` of event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    pub start: Millis,
    pub end: Millis,
}

/// How events are grouped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowSpec {
    /// Fixed, non-overlapping windows of `size`.
    Tumbling { size: Millis },
    /// Windows of `size` starting every `slide` (an event belongs to `size / slide` windows).
    Hopping { size: Millis, slide: Millis },
    /// Per key, activity separated by less than `gap` forms one window.
    Session { gap: Millis },
}

impl WindowSpec {
    /// The windows an event at `ts` belongs to, oldest first (for a session window: the
    /// single window `[ts, ts + gap)` before merging).
    pub fn assign(&self, ts: Millis) -> Vec<Window> {
        let mut out = Vec::new();
        self.assign_into(ts, &mut out);
        out
    }

    /// [`WindowSpec::assign`] into a buffer the caller reuses (one event at a time, no
    /// allocation).
    pub fn assign_into(&self, ts: Millis, out: &mut Vec<Window>) {
        match *self {
            WindowSpec::Tumbling { size } => {
                let start = ts - ts.rem_euclid(size);
                out.push(Window {
                    start,
                    end: start + size,
                });
            }
            WindowSpec::Hopping { size, slide } => {
                let last = ts - ts.rem_euclid(slide);
                let mut start = last - size + slide;
                while start <= last {
                    if ts < start + size {
                        out.push(Window {
                            start,
                            end: start + size,
                        });
                    }
                    start += slide;
                }
            }
            WindowSpec::Session { gap } => out.push(Window {
                start: ts,
                end: ts + gap,
            }),
        }
    }
}

/// An aggregate that session windows can merge.
pub trait Merge {
    fn merge(&mut self, other: &Self);
}

/// What `add` did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Counted in every window it belongs to that is still open.
    Counted,
    /// Every window it belongs to was purged: the caller routes it to the late topic.
    Late,
}

/// A window result handed out when it fires or is updated after firing.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted<K, A> {
    pub window: Window,
    pub key: K,
    pub value: A,
    /// True when this is the last emission (the window was purged).
    pub last: bool,
}

/// Keyed window state for one shard (a partition, or a processor's whole input).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize, A: Serialize",
    deserialize = "K: Deserialize<'de> + Ord, A: Deserialize<'de>"
))]
pub struct Windowed<K, A> {
    pub spec: WindowSpec,
    pub allowed_lateness: Millis,
    /// The watermark this state has seen (monotone).
    pub watermark: Millis,
    /// Open windows per key; a `Vec` because session windows of one key may differ in size.
    #[serde(with = "pairs")]
    entries: BTreeMap<K, Vec<Slot<A>>>,
    /// Events routed late so far.
    pub late: u64,
    /// Purged windows whose last values have not been taken by [`Windowed::take_unsaved`]
    /// (only when `keep_unsaved`).
    #[serde(default = "Vec::new")]
    flushed: Vec<(Window, K, A)>,
    /// Whether purged windows wait in `flushed` for [`Windowed::take_unsaved`]: on for a
    /// processor that upserts its windows into a sink at each checkpoint
    /// ([`Windowed::keeping_unsaved`]). Off, a purged window is gone once `advance` has
    /// emitted it: a processor that never takes them would pile every window it ever
    /// purged into its checkpointed state. A checkpoint from before the flag kept them.
    #[serde(default = "kept_before")]
    keep_unsaved: bool,
    /// Below this watermark [`Windowed::advance`] has nothing to do: the earliest end of a
    /// window due for (re-)emission and the earliest purge, a lower bound kept by `add` and
    /// made exact by each scan. Not checkpointed: a restored state scans at once. Without it
    /// every advance (one per batch of records) walked the whole state.
    #[serde(skip, default = "scan_at_once")]
    next_due: Millis,
    /// The windows of the event being added (kept to save an allocation per event).
    #[serde(skip)]
    scratch: Vec<Window>,
}

fn scan_at_once() -> Millis {
    Millis::MIN
}

fn kept_before() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Slot<A> {
    window: Window,
    value: A,
    fired: bool,
    /// Changed since it fired (or since it was created), so due for (re-)emission.
    dirty: bool,
    /// Changed since the last [`Windowed::take_unsaved`].
    #[serde(default)]
    unsaved: bool,
}

impl<K: Ord + Clone, A: Default + Clone + Merge> Windowed<K, A> {
    pub fn new(spec: WindowSpec, allowed_lateness: Millis) -> Self {
        Windowed {
            spec,
            allowed_lateness,
            watermark: Millis::MIN,
            entries: BTreeMap::new(),
            late: 0,
            flushed: Vec::new(),
            keep_unsaved: false,
            next_due: Millis::MAX,
            scratch: Vec::new(),
        }
    }

    /// Keeps purged windows until [`Windowed::take_unsaved`] takes them, so a sink sees each
    /// window's last value even when it is purged between two checkpoints.
    pub fn keeping_unsaved(mut self) -> Self {
        self.keep_unsaved = true;
        self
    }

    /// Stops keeping purged windows and forgets those kept: for a processor that only uses
    /// what [`Windowed::advance`] emits, whose state may come from a checkpoint written
    /// before keeping them became opt-in. Cheap once done.
    pub fn forget_unsaved(&mut self) {
        if self.keep_unsaved || !self.flushed.is_empty() {
            self.keep_unsaved = false;
            self.flushed = Vec::new();
        }
    }

    /// Number of open windows (across keys).
    pub fn open_windows(&self) -> usize {
        self.entries.values().map(Vec::len).sum()
    }

    fn purged(&self, w: Window) -> bool {
        self.watermark != Millis::MIN && w.end + self.allowed_lateness <= self.watermark
    }

    /// Adds an event at `ts` for `key`, updating each of its windows with `update`.
    pub fn add(&mut self, ts: Millis, key: &K, update: impl FnMut(&mut A)) -> Admit {
        let mut windows = std::mem::take(&mut self.scratch);
        windows.clear();
        self.spec.assign_into(ts, &mut windows);
        windows.retain(|w| !self.purged(*w));
        let admit = self.add_to(&windows, key, update);
        self.scratch = windows;
        admit
    }

    fn add_to(&mut self, windows: &[Window], key: &K, mut update: impl FnMut(&mut A)) -> Admit {
        if windows.is_empty() {
            self.late += 1;
            return Admit::Late;
        }
        let slots = self.entries.entry(key.clone()).or_default();
        match self.spec {
            WindowSpec::Session { .. } => {
                let w = windows[0];
                let mut value = A::default();
                update(&mut value);
                let mut merged = Slot {
                    window: w,
                    value,
                    fired: false,
                    dirty: true,
                    unsaved: true,
                };
                // Merge every session this one touches (overlapping or adjacent within gap).
                let mut i = 0;
                while i < slots.len() {
                    let s = &slots[i];
                    if s.window.start <= merged.window.end && merged.window.start <= s.window.end {
                        let s = slots.swap_remove(i);
                        merged.window.start = merged.window.start.min(s.window.start);
                        merged.window.end = merged.window.end.max(s.window.end);
                        let mut v = s.value;
                        v.merge(&merged.value);
                        merged.value = v;
                        merged.fired |= s.fired;
                    } else {
                        i += 1;
                    }
                }
                self.next_due = self.next_due.min(merged.window.end);
                slots.push(merged);
            }
            _ => {
                for &w in windows {
                    self.next_due = self.next_due.min(w.end);
                    match slots.iter_mut().find(|s| s.window == w) {
                        Some(s) => {
                            update(&mut s.value);
                            s.dirty = true;
                            s.unsaved = true;
                        }
                        None => {
                            let mut value = A::default();
                            update(&mut value);
                            slots.push(Slot {
                                window: w,
                                value,
                                fired: false,
                                dirty: true,
                                unsaved: true,
                            });
                        }
                    }
                }
            }
        }
        Admit::Counted
    }

    /// Advances the watermark (never backwards) and returns the windows that fired, were
    /// updated after firing, or were purged, in window order.
    pub fn advance(&mut self, watermark: Millis) -> Vec<Emitted<K, A>> {
        if watermark > self.watermark {
            self.watermark = watermark;
        }
        let wm = self.watermark;
        if wm < self.next_due {
            return Vec::new();
        }
        let lateness = self.allowed_lateness;
        let mut out = Vec::new();
        let flushed = &mut self.flushed;
        let keep = self.keep_unsaved;
        let mut next_due = Millis::MAX;
        self.entries.retain(|key, slots| {
            slots.retain_mut(|s| {
                let due = s.window.end <= wm;
                let purge = s.window.end + lateness <= wm;
                if due && (s.dirty || purge) {
                    out.push(Emitted {
                        window: s.window,
                        key: key.clone(),
                        value: s.value.clone(),
                        last: purge,
                    });
                    s.fired = true;
                    s.dirty = false;
                }
                if purge && s.unsaved && keep {
                    flushed.push((s.window, key.clone(), s.value.clone()));
                }
                if !purge {
                    let at = if s.dirty {
                        s.window.end
                    } else {
                        s.window.end.saturating_add(lateness)
                    };
                    next_due = next_due.min(at);
                }
                !purge
            });
            !slots.is_empty()
        });
        self.next_due = next_due;
        out.sort_by_key(|e| e.window);
        out
    }

    /// Windows changed since the last call, open, fired or purged (purged ones only when
    /// [`Windowed::keeping_unsaved`]), with their current values (for upserting results
    /// into a sink at a checkpoint).
    pub fn take_unsaved(&mut self) -> Vec<(Window, K, A)> {
        let mut out = std::mem::take(&mut self.flushed);
        for (k, slots) in &mut self.entries {
            for s in slots.iter_mut().filter(|s| s.unsaved) {
                s.unsaved = false;
                out.push((s.window, k.clone(), s.value.clone()));
            }
        }
        out
    }
}

/// A map as a list of pairs, so keys need not be strings in JSON checkpoints.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, K: Serialize, V: Serialize>(
        m: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<
        'de,
        D: Deserializer<'de>,
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
    >(
        d: D,
    ) -> Result<BTreeMap<K, V>, D::Error> {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// Per-partition event-time progress with idleness: the watermark of a set of partitions is
/// the minimum over the *active* ones, so a partition that stops receiving events does not
/// hold everyone back.
#[derive(Debug, Clone, Default)]
pub struct Watermarks {
    /// How far events may arrive out of order before they count against lateness.
    pub bound: Millis,
    /// After this long (wall clock) without events a partition no longer holds others back.
    pub idle_after: Millis,
    parts: BTreeMap<(String, i32), PartClock>,
}

#[derive(Debug, Clone, Copy)]
struct PartClock {
    max_ts: Millis,
    last_seen_wall: Millis,
    /// Idle and checked to have nothing left to read (see [`Watermarks::unconfirmed_idle`]).
    confirmed_idle: bool,
}

impl Watermarks {
    pub fn new(bound: Millis, idle_after: Millis) -> Self {
        Watermarks {
            bound,
            idle_after,
            parts: BTreeMap::new(),
        }
    }

    /// Records an event at `ts` on a partition, seen at wall-clock `now`.
    pub fn observe(&mut self, partition: &(String, i32), ts: Millis, now: Millis) {
        match self.parts.get_mut(partition) {
            Some(e) => {
                e.max_ts = e.max_ts.max(ts);
                e.last_seen_wall = now;
                e.confirmed_idle = false;
            }
            None => {
                self.parts.insert(
                    partition.clone(),
                    PartClock {
                        max_ts: ts,
                        last_seen_wall: now,
                        confirmed_idle: false,
                    },
                );
            }
        }
    }

    /// Partitions that went quiet for `idle_after` but are not yet known to have nothing
    /// left: quiet is not idle when the consumer is busy elsewhere (a backlog after a
    /// takeover, a slow machine). The caller checks each, then calls [`Self::still_busy`] or
    /// [`Self::confirm_idle`].
    pub fn unconfirmed_idle(&self, now: Millis) -> Vec<(String, i32)> {
        self.parts
            .iter()
            .filter(|(_, p)| !p.confirmed_idle && now - p.last_seen_wall >= self.idle_after)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The partition has records left to read: it keeps holding the watermark back for
    /// another `idle_after`, though none of its records came.
    pub fn still_busy(&mut self, partition: &(String, i32), now: Millis) {
        if let Some(p) = self.parts.get_mut(partition) {
            p.last_seen_wall = now;
        }
    }

    /// The partition is read to its end: idle until its next record.
    pub fn confirm_idle(&mut self, partition: &(String, i32)) {
        if let Some(p) = self.parts.get_mut(partition) {
            p.confirmed_idle = true;
        }
    }

    /// Keeps only the partitions `keep` accepts (the rest were revoked from this instance).
    pub fn retain(&mut self, mut keep: impl FnMut(&(String, i32)) -> bool) {
        self.parts.retain(|k, _| keep(k));
    }

    /// The watermark over the given partitions (all known ones when `only` is `None`):
    /// min over active partitions of `max_ts - bound`; if all are idle, the max.
    pub fn watermark(&self, now: Millis, only: Option<&[(String, i32)]>) -> Option<Millis> {
        let parts: Vec<&PartClock> = match only {
            None => self.parts.values().collect(),
            Some(keys) => keys.iter().filter_map(|k| self.parts.get(k)).collect(),
        };
        let active = parts
            .iter()
            .filter(|p| now - p.last_seen_wall < self.idle_after)
            .map(|p| p.max_ts - self.bound)
            .min();
        active.or_else(|| parts.iter().map(|p| p.max_ts - self.bound).max())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    struct Count(u64);
    impl Merge for Count {
        fn merge(&mut self, o: &Self) {
            self.0 += o.0;
        }
    }

    fn run(
        spec: WindowSpec,
        lateness: Millis,
        bound: Millis,
        ts: &[Millis],
    ) -> (Vec<Emitted<u8, Count>>, Vec<Millis>) {
        let mut w: Windowed<u8, Count> = Windowed::new(spec, lateness);
        let mut out = Vec::new();
        let mut late = Vec::new();
        let mut max = Millis::MIN;
        for &t in ts {
            if w.add(t, &0, |c| c.0 += 1) == Admit::Late {
                late.push(t);
            }
            max = max.max(t);
            out.extend(w.advance(max - bound));
        }
        out.extend(w.advance(Millis::MAX / 4));
        (out, late)
    }

    /// Final (last) emissions only, as window -> count.
    fn finals(out: &[Emitted<u8, Count>]) -> BTreeMap<Window, u64> {
        out.iter()
            .filter(|e| e.last)
            .map(|e| (e.window, e.value.0))
            .collect()
    }

    fn brute_fixed(spec: WindowSpec, ts: &[Millis]) -> BTreeMap<Window, u64> {
        let mut m = BTreeMap::new();
        for &t in ts {
            for w in spec.assign(t) {
                *m.entry(w).or_insert(0) += 1;
            }
        }
        m
    }

    fn brute_sessions(gap: Millis, ts: &[Millis]) -> BTreeMap<Window, u64> {
        let mut v = ts.to_vec();
        v.sort();
        let mut m = BTreeMap::new();
        let mut cur: Option<(Window, u64)> = None;
        for t in v {
            cur = match cur {
                Some((w, n)) if t <= w.end => Some((
                    Window {
                        start: w.start,
                        end: w.end.max(t + gap),
                    },
                    n + 1,
                )),
                Some((w, n)) => {
                    m.insert(w, n);
                    Some((
                        Window {
                            start: t,
                            end: t + gap,
                        },
                        1,
                    ))
                }
                None => Some((
                    Window {
                        start: t,
                        end: t + gap,
                    },
                    1,
                )),
            };
        }
        if let Some((w, n)) = cur {
            m.insert(w, n);
        }
        m
    }

    /// Timestamps that are out of order by at most `disorder`.
    fn disordered(disorder: Millis) -> impl Strategy<Value = Vec<Millis>> {
        prop::collection::vec((0i64..5_000, 0i64..=disorder), 1..200).prop_map(|steps| {
            let mut t = 1_000_000;
            steps
                .into_iter()
                .map(|(step, back)| {
                    t += step;
                    t - back
                })
                .collect()
        })
    }

    #[test]
    fn hopping_windows_cover_each_instant_size_over_slide_times() {
        let spec = WindowSpec::Hopping {
            size: 300,
            slide: 60,
        };
        for ts in [0, 1, 59, 60, 299, 300, -1, 123_456] {
            let ws = spec.assign(ts);
            assert_eq!(ws.len(), 5, "{ts}: {ws:?}");
            assert!(
                ws.iter()
                    .all(|w| w.start <= ts && ts < w.end && w.start % 60 == 0)
            );
        }
        assert_eq!(
            WindowSpec::Tumbling { size: 60 }.assign(-1),
            vec![Window { start: -60, end: 0 }]
        );
    }

    proptest! {
        /// Disorder within the watermark bound: nothing is late and every window's final
        /// count equals the brute-force count.
        #[test]
        fn bounded_disorder_gives_exact_fixed_windows(ts in disordered(2_000), hop in any::<bool>()) {
            let spec = if hop { WindowSpec::Hopping { size: 10_000, slide: 2_000 } } else { WindowSpec::Tumbling { size: 5_000 } };
            let (out, late) = run(spec, 0, 2_000, &ts);
            prop_assert!(late.is_empty());
            prop_assert_eq!(finals(&out), brute_fixed(spec, &ts));
        }

        /// Any disorder: each event is either counted or reported late, never lost, and the
        /// final counts equal brute force over the admitted events.
        #[test]
        fn late_events_are_reported_never_lost(ts in disordered(20_000), lateness in 0i64..5_000) {
            let spec = WindowSpec::Tumbling { size: 5_000 };
            let (out, late) = run(spec, lateness, 1_000, &ts);
            let f = finals(&out);
            let counted: u64 = f.values().sum();
            prop_assert_eq!(counted + late.len() as u64, ts.len() as u64);
            let mut admitted = ts.clone();
            for l in &late {
                let i = admitted.iter().position(|x| x == l).unwrap();
                admitted.remove(i);
            }
            prop_assert_eq!(f, brute_fixed(spec, &admitted));
        }

        /// Session windows, merged as events arrive out of order, equal sessionizing the
        /// sorted events by the gap.
        #[test]
        fn session_windows_match_brute_force(ts in disordered(2_000), gap in 1i64..20_000) {
            let spec = WindowSpec::Session { gap };
            // A bound covering the disorder plus the gap keeps every session open long enough.
            let (out, late) = run(spec, 0, 2_000 + gap, &ts);
            prop_assert!(late.is_empty());
            prop_assert_eq!(finals(&out), brute_sessions(gap, &ts));
        }
    }

    /// `advance` skips the state while nothing is due, and a state restored from a
    /// checkpoint (which does not keep when that is) still fires and purges on time.
    #[test]
    fn windows_fire_on_time_between_quiet_advances_and_after_a_restore() {
        let spec = WindowSpec::Hopping { size: 10, slide: 5 };
        let mut w: Windowed<u8, Count> = Windowed::new(spec, 3);
        w.add(1, &0, |c| c.0 += 1);
        w.add(7, &1, |c| c.0 += 1);
        assert!(w.advance(4).is_empty());
        let fired = w.advance(5);
        assert_eq!(fired.len(), 1, "[-5, 5) holds the event at 1");
        assert!(w.advance(6).is_empty(), "nothing changed, nothing due");
        let json = serde_json::to_string(&w).unwrap();
        let mut restored: Windowed<u8, Count> = serde_json::from_str(&json).unwrap();
        // [-5, 5) purges at 8; [0, 10) fires at 10.
        let purged = restored.advance(8);
        assert_eq!(purged.len(), 1);
        assert!(purged[0].last && purged[0].window == Window { start: -5, end: 5 });
        assert!(restored.advance(9).is_empty());
        let fired: Vec<_> = restored
            .advance(10)
            .into_iter()
            .map(|e| (e.window.start, e.key, e.value.0))
            .collect();
        assert_eq!(fired, vec![(0, 0, 1), (0, 1, 1)]);
        // Within lateness, an update to the fired [0, 10) re-emits at the next advance.
        restored.add(8, &1, |c| c.0 += 1);
        let again = restored.advance(11);
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].key, again[0].value.0), (1, 2));
    }

    /// Purged windows wait for `take_unsaved` only when the owner takes them: otherwise a
    /// processor that only uses what `advance` emits (top-N, sessions, anomaly minutes)
    /// would keep every window it ever purged in its checkpointed state.
    #[test]
    fn purged_windows_are_kept_for_a_sink_only_when_asked() {
        let spec = WindowSpec::Tumbling { size: 10 };
        let feed = |w: &mut Windowed<u8, Count>| {
            for t in 0..1_000 {
                w.add(t * 10, &0, |c| c.0 += 1);
                w.advance(t * 10);
            }
        };
        let mut emitting: Windowed<u8, Count> = Windowed::new(spec, 0);
        feed(&mut emitting);
        assert_eq!(emitting.open_windows(), 1);
        assert!(emitting.flushed.is_empty(), "nothing kept for a sink");
        assert!(serde_json::to_string(&emitting).unwrap().len() < 300);
        let mut sinking: Windowed<u8, Count> = Windowed::new(spec, 0).keeping_unsaved();
        feed(&mut sinking);
        let saved = sinking.take_unsaved();
        assert_eq!(saved.len(), 1_000, "999 purged and the open one");
        assert!(saved.iter().all(|(_, _, c)| *c == Count(1)));
        assert!(sinking.take_unsaved().is_empty());
        // A checkpoint written before keeping was opt-in restores as keeping (nothing a sink
        // waits for is lost); an emit-only owner forgets them.
        let mut old = serde_json::to_value(&sinking).unwrap();
        old.as_object_mut().unwrap().remove("keep_unsaved");
        let mut restored: Windowed<u8, Count> = serde_json::from_value(old).unwrap();
        restored.add(10_000, &0, |c| c.0 += 1);
        restored.advance(10_010);
        assert_eq!(restored.flushed.len(), 1);
        restored.forget_unsaved();
        restored.add(10_010, &0, |c| c.0 += 1);
        restored.advance(10_020);
        assert!(restored.flushed.is_empty());
    }

    /// Allowed lateness: an event behind the watermark but within lateness updates its
    /// (already fired) window, which is emitted again; after that it is late.
    #[test]
    fn fired_windows_update_within_lateness_then_go_late() {
        let spec = WindowSpec::Tumbling { size: 10 };
        let mut w: Windowed<u8, Count> = Windowed::new(spec, 5);
        w.add(1, &0, |c| c.0 += 1);
        let fired = w.advance(10);
        assert_eq!(fired.len(), 1);
        assert!(!fired[0].last);
        // Within lateness: counted, the window re-emits with the new value.
        assert_eq!(w.add(2, &0, |c| c.0 += 1), Admit::Counted);
        let again = w.advance(12);
        assert_eq!(again[0].value, Count(2));
        // Past end + lateness: purged, and a further event for it is late.
        let purged = w.advance(15);
        assert!(purged[0].last);
        assert_eq!(w.add(3, &0, |c| c.0 += 1), Admit::Late);
        assert_eq!(w.late, 1);
    }

    #[test]
    fn idle_partitions_do_not_hold_the_watermark_back() {
        let mut wm = Watermarks::new(100, 1_000);
        wm.observe(&("t".into(), 0), 10_000, 0);
        wm.observe(&("t".into(), 1), 5_000, 0);
        assert_eq!(wm.watermark(500, None), Some(4_900));
        // Partition 1 goes quiet while 0 keeps going.
        wm.observe(&("t".into(), 0), 20_000, 2_000);
        assert_eq!(wm.watermark(2_000, None), Some(19_900));
        // All quiet: the furthest partition leads.
        assert_eq!(wm.watermark(10_000, None), Some(19_900));
        let only = [("t".to_owned(), 1)];
        assert_eq!(wm.watermark(10_000, Some(&only)), Some(4_900));
    }

    #[test]
    fn a_quiet_partition_with_records_left_keeps_holding_the_watermark() {
        let mut wm = Watermarks::new(100, 1_000);
        let (p0, p1) = (("t".to_owned(), 0), ("t".to_owned(), 1));
        wm.observe(&p0, 10_000, 0);
        wm.observe(&p1, 5_000, 0);
        wm.observe(&p0, 20_000, 1_500);
        assert_eq!(wm.unconfirmed_idle(1_500), vec![p1.clone()]);
        // The consumer has not got to partition 1's backlog: it still holds the others back.
        wm.still_busy(&p1, 1_500);
        assert!(wm.unconfirmed_idle(1_500).is_empty());
        assert_eq!(wm.watermark(1_600, None), Some(4_900));
        // Read to its end, it lets go.
        wm.observe(&p0, 21_000, 2_600);
        assert_eq!(wm.unconfirmed_idle(2_600), vec![p1.clone()]);
        wm.confirm_idle(&p1);
        assert!(wm.unconfirmed_idle(3_000).is_empty());
        assert_eq!(wm.watermark(2_600, None), Some(20_900));
        // A new record makes it count again.
        wm.observe(&p1, 6_000, 2_700);
        assert_eq!(wm.watermark(2_700, None), Some(5_900));
    }
}
