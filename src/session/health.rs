//! How well a session is doing, as a score from 0 to 100, what is wrong, and what the user
//! can do about each thing: read by `GET /api/whatsapp/info`.

use super::SessionSnapshot;
use crate::domain::SessionStatus;
use crate::store::ContactStats;

/// Contacts older than this many days are worth fetching again.
const STALE_SYNC_DAYS: i64 = 7;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// 100 is healthy; every issue takes its weight off, never below 0.
    pub score: i64,
    pub issues: Vec<String>,
    /// One plain sentence per issue, or one saying nothing needs doing.
    pub recommendations: Vec<String>,
}

struct Assessment {
    score: i64,
    issues: Vec<String>,
    advice: Vec<String>,
}

impl Assessment {
    fn issue(&mut self, weight: i64, issue: impl Into<String>, advice: impl Into<String>) {
        self.score -= weight;
        self.issues.push(issue.into());
        self.advice.push(advice.into());
    }
}

const RESTART: &str = "Restart the session with POST /api/whatsapp/restart.";

/// The session's health at `now_ms` (Unix milliseconds), given its contacts' statistics.
pub fn assess(s: &SessionSnapshot, stats: &ContactStats, now_ms: i64) -> Health {
    let r = &s.record;
    let mut a = Assessment {
        score: 100,
        issues: Vec::new(),
        advice: Vec::new(),
    };
    match r.status {
        SessionStatus::Ready | SessionStatus::FetchingContacts => {}
        SessionStatus::Initializing | SessionStatus::Authenticated => a.issue(
            30,
            "The session is still connecting.",
            "Wait a few seconds and check the status again.",
        ),
        SessionStatus::QrReady => a.issue(
            40,
            "The QR code has not been scanned yet.",
            "Open WhatsApp on the phone, go to Linked devices and scan the QR code from the \
             status.",
        ),
        SessionStatus::Disconnected => a.issue(
            50,
            r.error_message
                .clone()
                .unwrap_or_else(|| "The session is disconnected.".into()),
            RESTART,
        ),
        SessionStatus::LoggedOut => a.issue(
            80,
            "The number was unlinked from the phone.",
            "Call POST /api/whatsapp/init and scan the new QR code.",
        ),
        SessionStatus::Error => a.issue(
            80,
            r.error_message
                .clone()
                .unwrap_or_else(|| "The session stopped with an error.".into()),
            RESTART,
        ),
    }
    if r.status.is_ready() && s.client.is_some() && !s.client_alive() {
        a.issue(50, "The WhatsApp client is not responding.", RESTART);
    }
    if r.status.is_ready() {
        if r.fetch.last_sync.is_none() && r.status != SessionStatus::FetchingContacts {
            a.issue(
                10,
                "Contacts have never been fetched.",
                "Start a contact fetch with POST /api/whatsapp/start-contact-fetch to fill the \
                 groups.",
            );
        } else if let Some(last) = r.fetch.last_sync {
            let age_days = (now_ms - last) / 86_400_000;
            if age_days >= STALE_SYNC_DAYS {
                a.issue(
                    10,
                    format!("Contacts were last fetched {age_days} days ago."),
                    "Fetch contacts again to bring in new numbers and activity.",
                );
            }
        }
    }
    if let Some(err) = &r.fetch.error {
        a.issue(
            15,
            format!("The last contact fetch failed: {err}"),
            "Start the contact fetch again; contacts already saved are kept.",
        );
    }
    if stats.total_contacts > 0 && stats.without_any_name * 2 > stats.total_contacts {
        a.issue(
            5,
            "More than half of the contacts have no name.",
            "Names come from the phone's address book; save names there and fetch again.",
        );
    }
    if a.advice.is_empty() {
        a.advice
            .push("Everything looks fine; no action needed.".into());
    }
    Health {
        score: a.score.clamp(0, 100),
        issues: a.issues,
        recommendations: a.advice,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Pair, PlaceId, SessionId, UserId};
    use crate::store::SessionRecord;

    const DAY_MS: i64 = 86_400_000;
    const NOW: i64 = 1_700_000_000_000;

    fn snapshot(status: SessionStatus, last_sync: Option<i64>) -> SessionSnapshot {
        let pair = Pair::new(UserId::new_unchecked(1), PlaceId::new_unchecked(1));
        let mut record = SessionRecord::new(SessionId::new(pair, NOW), pair, NOW);
        record.status = status;
        record.fetch.last_sync = last_sync;
        SessionSnapshot {
            record,
            qr: None,
            client: None,
            fetch_running: false,
            total_contacts: 0,
            total_groups: 0,
        }
    }

    fn named(total: i64, without_any_name: i64) -> ContactStats {
        ContactStats {
            total_contacts: total,
            without_any_name,
            ..ContactStats::default()
        }
    }

    #[test]
    fn a_ready_session_fetched_today_is_fully_healthy_and_needs_nothing() {
        let h = assess(
            &snapshot(SessionStatus::Ready, Some(NOW - DAY_MS)),
            &named(10, 0),
            NOW,
        );
        assert_eq!(h.score, 100);
        assert!(h.issues.is_empty(), "{h:?}");
        assert_eq!(
            h.recommendations,
            ["Everything looks fine; no action needed."]
        );
    }

    #[test]
    fn an_unscanned_qr_code_costs_40_and_says_how_to_scan() {
        let h = assess(&snapshot(SessionStatus::QrReady, None), &named(0, 0), NOW);
        assert_eq!(h.score, 60);
        assert_eq!(h.issues, ["The QR code has not been scanned yet."]);
        assert!(h.recommendations[0].contains("Linked devices"), "{h:?}");
    }

    #[test]
    fn a_ready_session_never_fetched_is_told_to_fetch() {
        let h = assess(&snapshot(SessionStatus::Ready, None), &named(0, 0), NOW);
        assert_eq!(h.score, 90);
        assert_eq!(h.issues, ["Contacts have never been fetched."]);
        assert!(
            h.recommendations[0].contains("/api/whatsapp/start-contact-fetch"),
            "{h:?}"
        );
        // A fetch under way is not "never fetched".
        let h = assess(
            &snapshot(SessionStatus::FetchingContacts, None),
            &named(0, 0),
            NOW,
        );
        assert_eq!(h.score, 100, "{h:?}");
    }

    #[test]
    fn contacts_a_week_old_are_stale_six_days_are_not() {
        let week = assess(
            &snapshot(SessionStatus::Ready, Some(NOW - 7 * DAY_MS)),
            &named(0, 0),
            NOW,
        );
        assert_eq!(week.score, 90);
        assert_eq!(week.issues, ["Contacts were last fetched 7 days ago."]);
        let six = assess(
            &snapshot(SessionStatus::Ready, Some(NOW - 6 * DAY_MS - 1)),
            &named(0, 0),
            NOW,
        );
        assert_eq!(six.score, 100, "{six:?}");
    }

    #[test]
    fn the_disconnect_reason_is_the_issue_when_there_is_one() {
        let mut s = snapshot(SessionStatus::Disconnected, None);
        s.record.error_message = Some("stream replaced".into());
        let h = assess(&s, &named(0, 0), NOW);
        assert_eq!(h.score, 50);
        assert_eq!(h.issues, ["stream replaced"]);
        assert_eq!(h.recommendations, [RESTART]);
    }

    #[test]
    fn issues_add_up_and_the_score_never_goes_below_zero() {
        let mut s = snapshot(SessionStatus::Error, None);
        s.record.fetch.error = Some("timed out".into());
        let h = assess(&s, &named(10, 6), NOW);
        // 80 + 15 + 5 = 100 off.
        assert_eq!(h.score, 0, "{h:?}");
        assert_eq!(h.issues.len(), 3, "{h:?}");
        assert_eq!(h.recommendations.len(), 3, "{h:?}");
        assert_eq!(h.issues[1], "The last contact fetch failed: timed out");
        assert_eq!(h.issues[2], "More than half of the contacts have no name.");
    }

    #[test]
    fn exactly_half_without_a_name_is_not_an_issue() {
        let h = assess(
            &snapshot(SessionStatus::Ready, Some(NOW)),
            &named(10, 5),
            NOW,
        );
        assert_eq!(h.score, 100, "{h:?}");
    }
}
