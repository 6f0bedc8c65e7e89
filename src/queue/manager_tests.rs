use super::*;
use crate::queue::state::{State, Status};
use crate::smtp::{Envelope, RecipientDsn};

const NOW: u64 = 1_796_205_600;

fn settings() -> Settings {
    Settings {
        enabled: true,
        retry: RetryPolicy {
            retry_seconds: vec![60, 300],
            max_queue_lifetime: 3600,
            delay_warning: None,
            jitter_percent: 0,
        },
        concurrency_per_destination: 2,
        max_connections: 10,
        messages_per_connection: 2,
        recipients_per_transaction: 2,
    }
}

fn queue() -> Queue {
    let destination_of: DestinationOf = Box::new(|domain: &str| {
        if domain.ends_with("relayed.test") {
            "relay.test:587".to_string()
        } else {
            domain.to_ascii_lowercase()
        }
    });
    Queue::new(settings(), destination_of, 1)
}

fn message(id: &str, from: &str, to: &[&str]) -> QueuedMessage {
    QueuedMessage {
        id: id.into(),
        envelope: Envelope {
            from: from.into(),
            to: to.iter().map(|s| s.to_string()).collect(),
            auth_user: None,
            client_ip: "127.0.0.1".parse().unwrap(),
            client_helo: "c".into(),
            tls: None,
            received_at: crate::timefmt::rfc3339_unix(NOW),
            smtputf8: false,
            eight_bit_mime: false,
            ret: None,
            envid: None,
            dsn: Vec::new(),
            moved_from: None,
        },
        size: 10,
    }
}

const ID: &str = "0000000100000000";
const ID2: &str = "0000000100000100";

fn connects(effects: &[Effect]) -> Vec<(WorkerId, Job)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Connect { worker, job } => Some((*worker, job.clone())),
            _ => None,
        })
        .collect()
}

/// The DSNs the queue asks for now.
fn notifications(queue: &mut Queue) -> Vec<BounceJob> {
    queue
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Notify(job) => Some(job),
            _ => None,
        })
        .collect()
}

fn result(rcpt: u32, outcome: Outcome, reply: &str) -> RecipientResult {
    RecipientResult {
        rcpt,
        outcome,
        reply: reply.into(),
        relay: Some("mx.example.org[127.0.0.2]:25".into()),
        dsn_forwarded: false,
    }
}

fn attempt(worker: WorkerId, job: Job, results: Vec<RecipientResult>, signal: Signal) -> Input {
    Input::Attempt(Attempt {
        worker,
        job,
        results,
        signal,
        reusable: true,
        elapsed_ms: 5,
    })
}

#[test]
fn a_stored_message_is_dispatched_per_destination_in_bounded_transactions() {
    let mut queue = queue();
    queue.handle(
        Input::Stored(vec![message(
            ID,
            "a@example.com",
            &[
                "b@example.org",
                "c@EXAMPLE.org",
                "d@example.org",
                "e@x.relayed.test",
            ],
        )]),
        NOW,
    );
    queue.tick(NOW);
    let started = connects(&queue.take_effects());
    let mut jobs: Vec<(&str, &str, Vec<u32>)> = started
        .iter()
        .map(|(_, j)| {
            (
                j.destination.as_str(),
                j.domain.as_str(),
                j.recipients.clone(),
            )
        })
        .collect();
    jobs.sort();
    // Two connections for example.org (the concurrency limit), each with one job of at most
    // two recipients, and one for the relay.
    assert_eq!(
        jobs,
        [
            ("example.org", "example.org", vec![0, 1]),
            ("example.org", "example.org", vec![2]),
            ("relay.test:587", "x.relayed.test", vec![3]),
        ]
    );
    assert!(queue.take_records().is_empty(), "nothing happened yet");
}

#[test]
fn delivered_is_recorded_and_the_segment_reclaimed_once_sealed() {
    let mut queue = queue();
    queue.handle(
        Input::Stored(vec![message(ID, "a@example.com", &["b@example.org"])]),
        NOW,
    );
    queue.tick(NOW);
    let (worker, job) = connects(&queue.take_effects()).remove(0);
    queue.handle(
        attempt(
            worker,
            job,
            vec![result(0, Outcome::Delivered, "250 2.0.0 Ok: queued")],
            Signal::Reachable,
        ),
        NOW,
    );
    let records = queue.take_records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].event, Event::Delivered);
    assert_eq!(records[0].reply.as_deref(), Some("250 2.0.0 Ok: queued"));
    assert!(!queue.is_live(ID));
    // Segment 1 is still the spool's active one: not reclaimed until a later segment is seen.
    let effects = queue.take_effects();
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Reclaim(_))),
        "{effects:?}"
    );
    queue.handle(
        Input::Stored(vec![message(
            "0000000200000000",
            "a@example.com",
            &["b@example.org"],
        )]),
        NOW,
    );
    assert!(queue.take_effects().contains(&Effect::Reclaim(1)));
}

#[test]
fn a_temporary_failure_defers_with_the_retry_schedule_then_expires_into_a_bounce() {
    let mut queue = queue();
    queue.handle(
        Input::Stored(vec![message(ID, "a@example.com", &["b@example.org"])]),
        NOW,
    );
    queue.tick(NOW);
    let (worker, job) = connects(&queue.take_effects()).remove(0);
    let greylisted = "450 4.2.0 Greylisted, try again later";
    queue.handle(
        attempt(
            worker,
            job,
            vec![result(0, Outcome::Temporary, greylisted)],
            Signal::Reachable,
        ),
        NOW,
    );
    let records = queue.take_records();
    assert_eq!(
        records[0].event,
        Event::Deferred {
            next_attempt_at: NOW + 60
        }
    );
    queue.handle(
        Input::WorkerDone {
            worker,
            destination: "example.org".into(),
        },
        NOW,
    );
    assert_eq!(queue.next_deadline(), Some(NOW + 60));
    queue.tick(NOW + 59);
    assert!(
        connects(&queue.take_effects()).is_empty(),
        "not before its time"
    );
    queue.tick(NOW + 60);
    let (worker, job) = connects(&queue.take_effects()).remove(0);
    assert_eq!(job.recipients, [0]);
    // Past the lifetime (3600 s), a temporary failure expires: a DSN first, Expired after.
    let late = NOW + 3600;
    queue.handle(
        attempt(
            worker,
            job,
            vec![result(0, Outcome::Temporary, "451 4.3.0 try later")],
            Signal::Reachable,
        ),
        late,
    );
    assert!(
        queue.take_records().is_empty(),
        "expired only once its DSN is spooled"
    );
    let notify = notifications(&mut queue).into_iter().next().expect("a DSN");
    assert_eq!(notify.kind, Kind::Failure);
    assert_eq!(notify.recipients[0].status, "4.4.7");
    queue.handle(
        Input::BounceSpooled {
            job: notify,
            ok: true,
        },
        late,
    );
    let records = queue.take_records();
    assert_eq!(records[0].event, Event::Expired);
    assert!(!queue.is_live(ID));
}

#[test]
fn one_refused_recipient_of_three_gets_a_dsn_and_no_bounce_goes_to_the_null_sender() {
    let mut queue = queue();
    queue.handle(
        Input::Stored(vec![
            message(ID, "a@example.com", &["b@example.org", "c@example.org"]),
            message(ID2, "", &["d@example.net"]),
        ]),
        NOW,
    );
    queue.tick(NOW);
    let started = connects(&queue.take_effects());
    for (worker, job) in started {
        let results = job
            .recipients
            .iter()
            .map(|&r| {
                if job.id == ID && r == 0 {
                    result(r, Outcome::Delivered, "250 ok")
                } else {
                    result(r, Outcome::Permanent, "550 5.1.1 User unknown")
                }
            })
            .collect();
        queue.handle(attempt(worker, job, results, Signal::Reachable), NOW);
    }
    let records = queue.take_records();
    let events: Vec<(&str, Option<u32>, &Event)> = records
        .iter()
        .map(|r| (r.id.as_str(), r.rcpt, &r.event))
        .collect();
    // The null sender's recipient is bounced at once: nobody to notify.
    assert!(events.contains(&(ID, Some(0), &Event::Delivered)));
    assert!(events.contains(&(ID2, Some(0), &Event::Bounced)));
    assert!(
        !events.contains(&(ID, Some(1), &Event::Bounced)),
        "not before the DSN is spooled"
    );
    let notifications: Vec<BounceJob> = notifications(&mut queue);
    assert_eq!(notifications.len(), 1);
    assert_eq!(notifications[0].id, ID);
    assert_eq!(notifications[0].recipients[0].status, "5.1.1");
    queue.handle(
        Input::BounceSpooled {
            job: notifications[0].clone(),
            ok: true,
        },
        NOW,
    );
    assert_eq!(queue.take_records()[0].event, Event::Bounced);
    assert!(!queue.is_live(ID));
}

#[test]
fn failures_known_together_share_one_dsn() {
    let mut queue = queue();
    queue.handle(
        Input::Stored(vec![message(
            ID,
            "a@example.com",
            &["b@example.org", "c@example.org"],
        )]),
        NOW,
    );
    queue.tick(NOW);
    let (worker, job) = connects(&queue.take_effects()).remove(0);
    let refused = |r| result(r, Outcome::Permanent, "550 5.1.1 User unknown");
    queue.handle(
        attempt(worker, job, vec![refused(0), refused(1)], Signal::Reachable),
        NOW,
    );
    let notifications: Vec<BounceJob> = notifications(&mut queue);
    assert_eq!(notifications.len(), 1);
    assert_eq!(notifications[0].recipients.len(), 2);
}

#[test]
fn notify_never_and_success_are_honoured() {
    let mut queue = queue();
    let mut m = message(ID, "a@example.com", &["b@example.org", "c@example.org"]);
    m.envelope.dsn = vec![
        RecipientDsn {
            notify: Some("NEVER".into()),
            orcpt: None,
        },
        RecipientDsn {
            notify: Some("SUCCESS".into()),
            orcpt: None,
        },
    ];
    queue.handle(Input::Stored(vec![m]), NOW);
    queue.tick(NOW);
    let (worker, job) = connects(&queue.take_effects()).remove(0);
    queue.handle(
        attempt(
            worker,
            job,
            vec![
                result(0, Outcome::Permanent, "550 5.1.1 no"),
                result(1, Outcome::Delivered, "250 ok"),
            ],
            Signal::Reachable,
        ),
        NOW,
    );
    let events: Vec<Event> = queue.take_records().into_iter().map(|r| r.event).collect();
    assert_eq!(events, [Event::Bounced, Event::Delivered]);
    let kinds: Vec<Kind> = queue
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Notify(job) => Some(job.kind),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, [Kind::Success]);
}

#[test]
fn an_unreachable_destination_is_suspended_and_its_waiting_mail_deferred_without_connecting() {
    let mut queue = queue();
    let ids: Vec<String> = (0..5).map(|n| format!("00000001{:08X}", n * 256)).collect();
    let messages = ids
        .iter()
        .map(|id| message(id, "a@example.com", &["b@dead.test"]))
        .collect();
    queue.handle(Input::Stored(messages), NOW);
    queue.tick(NOW);
    let started = connects(&queue.take_effects());
    assert_eq!(started.len(), 2, "the concurrency limit");
    let (worker, job) = started[0].clone();
    let refused = "451 4.4.1 connect to dead.test[127.0.0.9]:25: Connection refused";
    queue.handle(
        Input::Attempt(Attempt {
            worker,
            job,
            results: vec![result(0, Outcome::Temporary, refused)],
            signal: Signal::Unreachable,
            reusable: false,
            elapsed_ms: 1,
        }),
        NOW,
    );
    queue.handle(
        Input::WorkerDone {
            worker,
            destination: "dead.test".into(),
        },
        NOW,
    );
    queue.tick(NOW);
    // The three still waiting are deferred at once, not tried.
    let records = queue.take_records();
    assert_eq!(records.len(), 4, "{records:?}");
    assert!(connects(&queue.take_effects()).is_empty());
    for record in &records[1..] {
        let Event::Deferred { next_attempt_at } = record.event else {
            panic!("{record:?}")
        };
        assert!(
            next_attempt_at >= NOW + 60,
            "not before the suspension ends"
        );
        assert!(record.reply.as_deref().unwrap().contains("suspended"));
    }
}

#[test]
fn operator_commands_hold_release_retry_delete_and_bounce() {
    let mut queue = queue();
    queue.handle(
        Input::Stored(vec![message(ID, "a@example.com", &["b@example.org"])]),
        NOW,
    );
    queue.handle(Input::Command(Command::Hold(ID.into())), NOW);
    queue.tick(NOW);
    assert!(
        connects(&queue.take_effects()).is_empty(),
        "held: nothing is tried"
    );
    assert_eq!(queue.take_records()[0].event, Event::Held);
    queue.handle(Input::Command(Command::Release(ID.into())), NOW);
    let (worker, job) = connects(&queue.take_effects()).remove(0);
    queue.handle(
        attempt(
            worker,
            job,
            vec![result(0, Outcome::Temporary, "451 4.3.0 later")],
            Signal::Reachable,
        ),
        NOW,
    );
    queue.handle(
        Input::WorkerDone {
            worker,
            destination: "example.org".into(),
        },
        NOW,
    );
    queue.take_effects();
    queue.handle(Input::Command(Command::Retry(Some(ID.into()))), NOW + 1);
    assert_eq!(connects(&queue.take_effects()).len(), 1, "retried at once");
    let events: Vec<Event> = queue.take_records().into_iter().map(|r| r.event).collect();
    assert_eq!(
        events,
        [
            Event::Released,
            Event::Deferred {
                next_attempt_at: NOW + 60
            },
            Event::RetryNow
        ]
    );

    let mut queue = self::queue();
    queue.handle(
        Input::Stored(vec![message(ID, "a@example.com", &["b@example.org"])]),
        NOW,
    );
    queue.handle(Input::Command(Command::Hold(ID.into())), NOW);
    queue.handle(Input::Command(Command::Bounce(ID.into())), NOW);
    let job = notifications(&mut queue)
        .into_iter()
        .next()
        .expect("queue bounce sends a DSN");
    assert_eq!(job.recipients[0].status, "5.0.0");

    let mut queue = self::queue();
    queue.handle(
        Input::Stored(vec![message(ID, "a@example.com", &["b@example.org"])]),
        NOW,
    );
    queue.handle(Input::Command(Command::Delete(ID.into())), NOW);
    assert!(!queue.is_live(ID));
    assert_eq!(queue.take_records()[0].event, Event::Deleted);
}

#[test]
fn recovery_schedules_deferred_recipients_and_skips_finished_ones() {
    let mut queue = queue();
    let deferred = RecipientState {
        status: Status::Deferred,
        attempts: 1,
        next_attempt_at: NonZeroU64::new(NOW + 100),
        ..Default::default()
    };
    let delivered = RecipientState {
        status: Status::Delivered,
        ..Default::default()
    };
    queue.recover(
        &message(ID, "a@example.com", &["b@example.org"]),
        vec![deferred],
        NOW,
    );
    queue.recover(
        &message(ID2, "a@example.com", &["b@example.org"]),
        vec![delivered.clone()],
        NOW,
    );
    queue.recover(
        &message("0000000000000000", "a@example.com", &["b@example.org"]),
        vec![delivered],
        NOW,
    );
    queue.recovered(NOW);
    assert!(queue.is_live(ID) && !queue.is_live(ID2));
    // Segment 0 holds only a finished message and is below the writer's segment 1.
    assert_eq!(queue.take_effects(), [Effect::Reclaim(0)]);
    assert_eq!(queue.next_deadline(), Some(NOW + 100));
    queue.tick(NOW + 100);
    assert_eq!(connects(&queue.take_effects()).len(), 1);
}

#[test]
fn a_reusable_connection_gets_the_next_job_of_its_destination_up_to_the_limit() {
    let mut queue = queue();
    let ids: Vec<String> = (0..6).map(|n| format!("00000001{:08X}", n * 256)).collect();
    queue.handle(
        Input::Stored(
            ids.iter()
                .map(|id| message(id, "a@example.com", &["b@example.org"]))
                .collect(),
        ),
        NOW,
    );
    queue.tick(NOW);
    let (worker, job) = connects(&queue.take_effects()).remove(0);
    queue.handle(
        attempt(
            worker,
            job,
            vec![result(0, Outcome::Delivered, "250 ok")],
            Signal::Reachable,
        ),
        NOW,
    );
    let next = queue.take_effects().into_iter().find_map(|e| match e {
        Effect::Next { worker: w, job } if w == worker => Some(job),
        _ => None,
    });
    let job = next
        .flatten()
        .expect("a second message on the same connection");
    queue.handle(
        attempt(
            worker,
            job,
            vec![result(0, Outcome::Delivered, "250 ok")],
            Signal::Reachable,
        ),
        NOW,
    );
    let next = queue.take_effects().into_iter().find_map(|e| match e {
        Effect::Next { worker: w, job } if w == worker => Some(job),
        _ => None,
    });
    assert_eq!(next, Some(None), "messages_per_connection = 2");
}

#[test]
fn enhanced_codes_come_from_the_reply_or_its_class() {
    assert_eq!(enhanced_of("550 5.1.1 <b@x>: unknown", "5.0.0"), "5.1.1");
    assert_eq!(enhanced_of("550 User unknown", "5.0.0"), "5.0.0");
    assert_eq!(enhanced_of("421 closing", "5.0.0"), "4.0.0");
    assert_eq!(enhanced_of("", "4.4.1"), "4.4.1");
    assert_eq!(segment_of("0000002A00000010"), 42);
}

#[test]
fn no_success_report_when_the_next_hop_took_the_dsn_request() {
    let mut queue = queue();
    let mut m = message(ID, "a@example.com", &["b@example.org"]);
    m.envelope.dsn = vec![RecipientDsn {
        notify: Some("SUCCESS".into()),
        orcpt: None,
    }];
    queue.handle(Input::Stored(vec![m]), NOW);
    queue.tick(NOW);
    let (worker, job) = connects(&queue.take_effects()).remove(0);
    let delivered = RecipientResult {
        dsn_forwarded: true,
        ..result(0, Outcome::Delivered, "250 ok")
    };
    queue.handle(
        attempt(worker, job, vec![delivered], Signal::Reachable),
        NOW,
    );
    assert!(
        !queue
            .take_effects()
            .iter()
            .any(|e| matches!(e, Effect::Notify(_))),
        "the next hop reports delivery itself"
    );
}

#[test]
fn a_delay_warning_is_sent_once_after_delay_warning_seconds() {
    let mut settings = settings();
    settings.retry.delay_warning = Some(100);
    let mut queue = Queue::new(settings, Box::new(|d: &str| d.to_string()), 1);
    queue.handle(
        Input::Stored(vec![message(ID, "a@example.com", &["b@example.org"])]),
        NOW,
    );
    queue.tick(NOW);
    let later = |queue: &mut Queue, at: u64| -> Vec<BounceJob> {
        let (worker, job) = connects(&queue.take_effects()).remove(0);
        queue.handle(
            attempt(
                worker,
                job,
                vec![result(0, Outcome::Temporary, "451 4.3.0 later")],
                Signal::Reachable,
            ),
            at,
        );
        queue.handle(
            Input::WorkerDone {
                worker,
                destination: "example.org".into(),
            },
            at,
        );
        notifications(queue)
    };
    assert!(later(&mut queue, NOW).is_empty(), "too early");
    queue.tick(NOW + 200);
    let warnings = later(&mut queue, NOW + 200);
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].kind, Kind::Delay);
    assert_eq!(warnings[0].recipients[0].then, Some(Event::DelayWarned));
    queue.handle(
        Input::BounceSpooled {
            job: warnings[0].clone(),
            ok: true,
        },
        NOW + 200,
    );
    let events: Vec<Event> = queue.take_records().into_iter().map(|r| r.event).collect();
    assert!(events.contains(&Event::DelayWarned), "{events:?}");
    queue.tick(NOW + 500);
    assert!(later(&mut queue, NOW + 500).is_empty(), "only once");
}

#[test]
fn a_long_deferred_message_is_copied_forward_and_its_segment_reclaimed() {
    let mut queue = queue();
    let ids: Vec<String> = (0..4).map(|n| format!("00000001{:08X}", n * 256)).collect();
    let mut messages: Vec<QueuedMessage> = ids
        .iter()
        .map(|id| message(id, "a@example.com", &["b@example.org"]))
        .collect();
    messages[0] = message(
        &ids[0],
        "a@example.com",
        &["done@example.org", "late@example.net"],
    );
    queue.handle(Input::Stored(messages), NOW);
    queue.tick(NOW);
    let mut started = connects(&queue.take_effects());
    while let Some((worker, job)) = started.pop() {
        let (outcome, reply) = if job.domain == "example.net" {
            (Outcome::Temporary, "451 4.4.1 no answer")
        } else {
            (Outcome::Delivered, "250 ok")
        };
        let results = job
            .recipients
            .iter()
            .map(|&rcpt| result(rcpt, outcome, reply))
            .collect();
        let destination = job.destination.clone();
        queue.handle(
            Input::Attempt(Attempt {
                worker,
                job,
                results,
                signal: Signal::Reachable,
                reusable: false,
                elapsed_ms: 1,
            }),
            NOW,
        );
        queue.handle(
            Input::WorkerDone {
                worker,
                destination,
            },
            NOW,
        );
        started.extend(connects(&queue.take_effects()));
    }
    queue.take_records();
    // A message in segment 2 seals segment 1, which now holds one unfinished message of four.
    queue.handle(
        Input::Stored(vec![message(
            "0000000200000000",
            "a@example.com",
            &["b@example.org"],
        )]),
        NOW,
    );
    queue.tick(NOW + 30);
    assert!(
        !queue
            .take_effects()
            .iter()
            .any(|e| matches!(e, Effect::CopyForward { .. })),
        "not before the segment has been sealed for a while"
    );
    queue.tick(NOW + 700);
    let copy = queue.take_effects().into_iter().find_map(|e| match e {
        Effect::CopyForward { id, recipients } => Some((id, recipients)),
        _ => None,
    });
    assert_eq!(
        copy,
        Some((ids[0].clone(), vec![1])),
        "only the unfinished recipient"
    );
    let mut copied = message("0000000200000100", "a@example.com", &["late@example.net"]);
    copied.envelope.moved_from = Some(ids[0].clone());
    queue.handle(Input::Stored(vec![copied]), NOW + 701);
    let records = queue.take_records();
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0].id, "0000000200000100");
    let Event::Carried {
        attempts,
        next_attempt_at,
        ..
    } = records[0].event
    else {
        panic!("{records:?}")
    };
    assert_eq!((attempts, next_attempt_at), (1, Some(NOW + 60)));
    assert_eq!(records[0].reply.as_deref(), Some("451 4.4.1 no answer"));
    assert_eq!(
        (records[1].id.as_str(), &records[1].event),
        (ids[0].as_str(), &Event::Deleted)
    );
    assert!(queue.take_effects().contains(&Effect::Reclaim(1)));
    assert!(queue.is_live("0000000200000100") && !queue.is_live(&ids[0]));

    // A copy whose original was deleted meanwhile is dropped.
    let mut orphan = message("0000000200000200", "a@example.com", &["x@example.net"]);
    orphan.envelope.moved_from = Some("00000001DEADBEEF".into());
    queue.handle(Input::Stored(vec![orphan]), NOW + 702);
    assert_eq!(queue.take_records()[0].event, Event::Deleted);
    assert!(!queue.is_live("0000000200000200"));
}

#[test]
fn a_compacted_log_keeps_each_unfinished_state_and_finished_messages_still_spooled() {
    let mut queue = queue();
    queue.handle(
        Input::Stored(vec![
            message(ID, "a@example.com", &["b@example.org"]),
            message(ID2, "a@example.com", &["c@example.net", "d@example.net"]),
        ]),
        NOW,
    );
    queue.tick(NOW);
    for (worker, job) in connects(&queue.take_effects()) {
        let outcome = match job.domain.as_str() {
            "example.org" => (Outcome::Delivered, "250 2.0.0 Ok"),
            _ => (Outcome::Temporary, "451 4.4.1 no answer"),
        };
        let results = job
            .recipients
            .iter()
            .map(|&rcpt| result(rcpt, outcome.0, outcome.1))
            .collect();
        queue.handle(attempt(worker, job, results, Signal::Reachable), NOW);
    }
    let mut logged = State::default();
    for record in queue.take_records() {
        logged.apply(&record);
    }
    let summary: Vec<Record> = queue.state_summary(NOW + 5).collect();
    assert!(summary.iter().all(|r| r.id == ID2), "{summary:?}");
    let mut folded = State::default();
    for record in &summary {
        folded.apply(record);
    }
    assert_eq!(folded.message(ID2, 2), logged.message(ID2, 2));
    assert_eq!(folded.message(ID2, 2).recipients[0].attempts, 1);
    // ID is finished but its segment is still the active one: its records must stay.
    assert!(queue.finished_but_spooled(ID) && !queue.finished_but_spooled(ID2));
}

#[test]
fn the_census_counts_unfinished_messages_and_their_recipients_by_status() {
    let mut queue = queue();
    queue.handle(
        Input::Stored(vec![
            message(ID, "a@example.com", &["b@example.org", "c@example.net"]),
            message(ID2, "a@example.com", &["d@example.org"]),
        ]),
        NOW,
    );
    queue.handle(Input::Command(Command::Hold(ID2.into())), NOW);
    queue.tick(NOW);
    let started = connects(&queue.take_effects());
    let (worker, job) = started
        .into_iter()
        .find(|(_, job)| job.id == ID && job.domain == "example.org")
        .expect("a connection for b@example.org");
    queue.handle(
        attempt(
            worker,
            job,
            vec![result(0, Outcome::Delivered, "250 2.0.0 ok")],
            Signal::Reachable,
        ),
        NOW,
    );
    let census = queue.census();
    assert_eq!(census.messages, 2);
    assert_eq!(
        census.recipients,
        [("delivered", 1), ("held", 1), ("queued", 1)]
    );
    // A finished message leaves the census.
    queue.handle(Input::Command(Command::Delete(ID2.into())), NOW);
    assert_eq!(queue.census().messages, 1);
}
