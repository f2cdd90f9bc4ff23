//! How fast one number sends: never faster than a pace with jitter (looking like a person,
//! not a script, is what keeps a number from being banned), and at most a daily cap.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// The least time between two sends of one number.
    pub interval: Duration,
    /// Up to this much more, drawn anew for every gap.
    pub jitter: Duration,
    /// Sends of one number in any 24 hours.
    pub daily_cap: u32,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(3),
            jitter: Duration::from_secs(2),
            daily_cap: 1_000,
        }
    }
}

pub const DAY_MS: i64 = 86_400_000;

/// One number's pace, on tokio's clock (so a test can pause it).
#[derive(Debug)]
pub struct Pacer {
    pacing: Pacing,
    last: Option<Instant>,
    jitter: Duration,
}

impl Pacer {
    /// `since_last`: how long ago this number last sent, if it ever did (it may have been
    /// before a restart).
    pub fn new(pacing: Pacing, since_last: Option<Duration>) -> Self {
        let now = Instant::now();
        Self {
            pacing,
            last: since_last.map(|d| now.checked_sub(d).unwrap_or(now)),
            jitter: random_up_to(pacing.jitter),
        }
    }

    /// When the next message may go; `min_gap` is a message's own slower pace (a bulk send's
    /// delay), never a faster one.
    pub fn next_at(&self, min_gap: Duration) -> Instant {
        match self.last {
            None => Instant::now(),
            Some(last) => last + (self.pacing.interval + self.jitter).max(min_gap),
        }
    }

    pub async fn wait(&self, min_gap: Duration) {
        tokio::time::sleep_until(self.next_at(min_gap)).await;
    }

    /// A send was attempted now: the next gap starts here, with fresh jitter.
    pub fn sent(&mut self) {
        self.last = Some(Instant::now());
        self.jitter = random_up_to(self.pacing.jitter);
    }

    /// With `sent_in_window` sends in the last 24 hours (the oldest at `oldest_ms`), how long
    /// until the cap allows another; `None` when it allows one now.
    pub fn cap_wait(
        &self,
        sent_in_window: i64,
        oldest_ms: Option<i64>,
        now_ms: i64,
    ) -> Option<Duration> {
        if sent_in_window < i64::from(self.pacing.daily_cap) {
            return None;
        }
        let free_at = oldest_ms.unwrap_or(now_ms) + DAY_MS;
        Some(Duration::from_millis((free_at - now_ms).max(1) as u64))
    }
}

fn random_up_to(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let mut b = [0u8; 8];
    // Without randomness the gaps are simply the interval plus the whole jitter.
    if getrandom::fill(&mut b).is_err() {
        return max;
    }
    let r = u64::from_le_bytes(b);
    let span = max.as_micros().min(u128::from(u64::MAX)) as u64;
    Duration::from_micros(r % (span + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sends_are_spaced_by_the_interval_plus_jitter_never_less() {
        let pacing = Pacing {
            interval: Duration::from_secs(3),
            jitter: Duration::from_secs(2),
            daily_cap: 1_000,
        };
        let mut pacer = Pacer::new(pacing, None);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..50 {
            pacer.wait(Duration::ZERO).await;
            times.push(Instant::now());
            pacer.sent();
        }
        assert_eq!(times[0], start, "the first send goes at once");
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        for g in &gaps {
            assert!(*g >= Duration::from_secs(3), "{g:?}");
            assert!(*g <= Duration::from_secs(5), "{g:?}");
        }
        // The jitter varies: 49 gaps that are all equal would look like a script.
        assert!(gaps.iter().any(|g| *g != gaps[0]), "{gaps:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_before_a_restart_still_counts_and_a_slower_gap_wins() {
        let pacing = Pacing {
            interval: Duration::from_secs(10),
            jitter: Duration::ZERO,
            daily_cap: 1_000,
        };
        let mut pacer = Pacer::new(pacing, Some(Duration::from_secs(4)));
        let start = Instant::now();
        pacer.wait(Duration::ZERO).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(6));
        pacer.sent();
        let t = Instant::now();
        pacer.wait(Duration::from_secs(30)).await;
        assert_eq!(Instant::now() - t, Duration::from_secs(30));
        pacer.sent();
        let t = Instant::now();
        pacer.wait(Duration::from_secs(1)).await;
        assert_eq!(
            Instant::now() - t,
            Duration::from_secs(10),
            "never faster than the pace"
        );
    }

    #[test]
    fn the_daily_cap_waits_until_the_oldest_send_leaves_the_window() {
        let pacing = Pacing {
            daily_cap: 3,
            ..Pacing::default()
        };
        let pacer = Pacer::new(pacing, None);
        let now = 10 * DAY_MS;
        assert_eq!(pacer.cap_wait(2, Some(now - 1_000), now), None);
        assert_eq!(
            pacer.cap_wait(3, Some(now - DAY_MS + 5_000), now),
            Some(Duration::from_millis(5_000))
        );
    }
}
