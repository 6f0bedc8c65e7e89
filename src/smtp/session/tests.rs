//! One test per reply the session can give, each checking the basic and the enhanced code.

use super::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

const CLIENT: &str = "192.0.2.7";

fn config(starttls_available: bool) -> Arc<SessionConfig> {
    Arc::new(SessionConfig {
        hostname: "mx.example.test".into(),
        starttls_available,
        limits: Limits {
            max_message_size: 1000,
            max_recipients: 3,
            max_errors: 20,
            ..Limits::default()
        },
        check_header_from: false,
        clock: || std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_346_563),
        memory: MemoryBudget::new(usize::MAX),
        ports: PORTS,
    })
}

/// As in the default configuration, which listens on 2587 and 2465.
const PORTS: reply::Ports = reply::Ports {
    own: 2587,
    implicit_tls: Some(2465),
};

fn tls_info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1_3".into(),
        cipher: "TLS13_AES_256_GCM_SHA384".into(),
    }
}

/// A session on a STARTTLS listener, greeting already taken.
fn plaintext() -> Session {
    plaintext_with(config(true))
}

fn plaintext_with(config: Arc<SessionConfig>) -> Session {
    let mut session = Session::new(config, CLIENT.parse().unwrap(), false, None);
    assert_eq!(outcome(&mut session, ""), ["220"]);
    session
}

fn trusted() -> Session {
    let mut session = Session::new(config(true), CLIENT.parse().unwrap(), true, None);
    outcome(&mut session, "");
    session
}

/// A session after STARTTLS and EHLO.
fn encrypted() -> Session {
    encrypted_with(config(true))
}

fn encrypted_with(config: Arc<SessionConfig>) -> Session {
    let mut session = plaintext_with(config);
    assert_eq!(
        outcome(&mut session, "STARTTLS\r\n"),
        ["220 2.0.0", "STARTTLS"]
    );
    session.tls_established(tls_info());
    outcome(&mut session, "EHLO client.example\r\n");
    session
}

/// A session after STARTTLS, EHLO and a successful AUTH as alice.
fn authenticated() -> Session {
    authenticated_with(config(true))
}

fn authenticated_with(config: Arc<SessionConfig>) -> Session {
    let mut session = encrypted_with(config);
    outcome(
        &mut session,
        &format!("AUTH PLAIN {}\r\n", plain("alice@example.test", "pw")),
    );
    session.auth_finished(AuthOutcome::Accepted("alice@example.test".into()));
    assert_eq!(outcome(&mut session, ""), ["235 2.7.0"]);
    session
}

fn plain(user: &str, password: &str) -> String {
    BASE64.encode(format!("\0{user}\0{password}"))
}

/// Feeds `input` and renders every action: replies as "code status" (or just "code"),
/// the others by name.
fn outcome(session: &mut Session, input: &str) -> Vec<String> {
    session.receive(input.as_bytes());
    drain(session)
}

/// Renders the actions; sender checks are allowed on the spot, without quotas (the tests of
/// the sender policy use [`drain_deciding`]).
fn drain(session: &mut Session) -> Vec<String> {
    drain_deciding(session, Some(SenderDecision::Allowed))
}

fn drain_deciding(session: &mut Session, sender_decision: Option<SenderDecision>) -> Vec<String> {
    let mut rendered = Vec::new();
    while let Some(action) = session.next_action() {
        rendered.push(match action {
            Action::AuthorizeMail { user, sender } => match sender_decision {
                Some(decision) => {
                    session.mail_checked(decision, Allowance::default());
                    continue;
                }
                None => format!("AUTHORIZE {user} {sender}"),
            },
            Action::AuthorizeHeaderFrom { user, addresses } => {
                format!("AUTHORIZE FROM {user} {}", addresses.join(" "))
            }
            Action::Send(reply) => match reply.status() {
                Some(status) => format!("{} {status}", reply.code()),
                None => reply.code().to_string(),
            },
            Action::StartTls => "STARTTLS".into(),
            Action::Authenticate(c) => format!("AUTHENTICATE {} {}", c.username, c.password),
            Action::AuthDenied { username, reason } => format!("DENIED {username:?} {reason}"),
            Action::Spool(_) => "SPOOL".into(),
            Action::Close => "CLOSE".into(),
        });
    }
    rendered
}

fn replies_text(session: &mut Session, input: &str) -> Vec<Reply> {
    session.receive(input.as_bytes());
    let mut replies = Vec::new();
    while let Some(action) = session.next_action() {
        match action {
            Action::Send(reply) => replies.push(reply),
            Action::AuthorizeMail { .. } => allow(session),
            _ => {}
        }
    }
    replies
}

fn allow(session: &mut Session) {
    session.mail_checked(SenderDecision::Allowed, Allowance::default());
}

fn take_submission(session: &mut Session, input: &str) -> Submission {
    session.receive(input.as_bytes());
    loop {
        match session.next_action() {
            Some(Action::Spool(submission)) => return *submission,
            Some(Action::AuthorizeMail { .. }) => allow(session),
            Some(_) => continue,
            None => panic!("no submission"),
        }
    }
}

// ---- greeting, QUIT, EHLO ----------------------------------------------------------------------

#[test]
fn greeting_is_220_and_quit_is_221_2_0_0() {
    let mut session = Session::new(config(true), CLIENT.parse().unwrap(), false, None);
    let replies = replies_text(&mut session, "");
    assert_eq!(
        replies[0].to_wire(),
        "220 mx.example.test ESMTP Portcullis ready\r\n"
    );
    assert_eq!(outcome(&mut session, "QUIT\r\n"), ["221 2.0.0", "CLOSE"]);
    assert!(session.is_closed());
}

#[test]
fn ehlo_offers_starttls_before_tls_and_auth_only_after() {
    let mut session = plaintext();
    let before = replies_text(&mut session, "EHLO c.example\r\n")[0].to_wire();
    for extension in [
        "PIPELINING",
        "SIZE 1000",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "DSN",
        "HELP",
        "STARTTLS",
    ] {
        assert!(
            before.contains(&format!("250-{extension}\r\n"))
                || before.contains(&format!("250 {extension}\r\n")),
            "{extension} in {before}"
        );
    }
    assert!(!before.contains("AUTH"));
    assert_eq!(
        outcome(&mut session, "STARTTLS\r\n"),
        ["220 2.0.0", "STARTTLS"]
    );
    session.tls_established(tls_info());
    let after = replies_text(&mut session, "EHLO c.example\r\n")[0].to_wire();
    assert!(after.contains("250 AUTH PLAIN LOGIN\r\n"), "{after}");
    assert!(after.contains("250-DSN\r\n"), "{after}");
    assert!(!after.contains("STARTTLS"));
}

#[test]
fn ehlo_lists_exactly_these_keywords_on_every_kind_of_listener() {
    let keywords = |session: &mut Session| {
        let wire = replies_text(session, "EHLO c\r\n")[0].to_wire();
        // Each line after the greeting is "250-KEYWORD" or, the last, "250 KEYWORD".
        wire.split_terminator("\r\n")
            .skip(1)
            .map(|line| line[4..].to_string())
            .collect::<Vec<_>>()
    };
    let common = [
        "PIPELINING",
        "SIZE 1000",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "DSN",
        "HELP",
    ];
    let with = |last: &'static str| [&common[..], &[last]].concat();
    assert_eq!(keywords(&mut plaintext()), with("STARTTLS"));
    let mut implicit = Session::new(
        config(false),
        CLIENT.parse().unwrap(),
        false,
        Some(tls_info()),
    );
    outcome(&mut implicit, "");
    assert_eq!(keywords(&mut implicit), with("AUTH PLAIN LOGIN"));
    let mut no_tls = Session::new(config(false), CLIENT.parse().unwrap(), true, None);
    outcome(&mut no_tls, "");
    assert_eq!(keywords(&mut no_tls), common);
}

#[test]
fn implicit_tls_session_offers_auth_and_refuses_starttls_with_503_5_5_1() {
    let mut session = Session::new(
        config(false),
        CLIENT.parse().unwrap(),
        false,
        Some(tls_info()),
    );
    outcome(&mut session, "");
    let ehlo = replies_text(&mut session, "EHLO c\r\n")[0].to_wire();
    assert!(ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"));
    assert_eq!(outcome(&mut session, "STARTTLS\r\n"), ["503 5.5.1"]);
}

#[test]
fn helo_is_250_without_extensions() {
    let mut session = plaintext();
    assert_eq!(
        replies_text(&mut session, "HELO c\r\n")[0].to_wire(),
        "250 mx.example.test greets c\r\n"
    );
}

// ---- TLS required -------------------------------------------------------------------------------

#[test]
fn mail_rcpt_data_vrfy_auth_before_tls_are_530_5_7_0_starttls_first() {
    let mut session = plaintext();
    outcome(&mut session, "EHLO c\r\n");
    for command in [
        "MAIL FROM:<a@b.c>",
        "RCPT TO:<a@b.c>",
        "DATA",
        "VRFY alice",
        "AUTH PLAIN",
    ] {
        let replies = replies_text(&mut session, &format!("{command}\r\n"));
        assert_eq!(replies, [reply::must_starttls(PORTS)], "{command}");
        assert_eq!(
            (replies[0].code(), replies[0].status()),
            (530, Some(reply::Status(5, 7, 0)))
        );
        assert_eq!(
            replies[0].text(),
            "Must issue a STARTTLS command first. Set the client to use STARTTLS on this port \
             (2587), or implicit TLS (SSL/TLS) on port 2465"
        );
    }
}

#[test]
fn the_530_names_no_implicit_tls_port_when_the_server_has_none() {
    let reply = reply::must_starttls(reply::Ports {
        own: 587,
        implicit_tls: None,
    });
    assert_eq!(
        reply.text(),
        "Must issue a STARTTLS command first. Set the client to use STARTTLS on this port (587)"
    );
}

#[test]
fn trusted_network_submits_without_tls_or_auth_but_never_auths_in_clear() {
    let mut session = trusted();
    assert_eq!(
        outcome(&mut session, "EHLO c\r\nAUTH PLAIN\r\n"),
        ["250", "530 5.7.0"]
    );
    assert_eq!(
        outcome(
            &mut session,
            "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nhi\r\n.\r\n"
        ),
        ["250 2.1.0", "250 2.1.5", "354", "SPOOL"]
    );
}

#[test]
fn starttls_with_arguments_again_or_unavailable() {
    let mut session = plaintext();
    assert_eq!(outcome(&mut session, "STARTTLS now\r\n"), ["501 5.5.4"]);
    assert_eq!(
        outcome(&mut session, "STARTTLS\r\n"),
        ["220 2.0.0", "STARTTLS"]
    );
    session.tls_established(tls_info());
    assert_eq!(outcome(&mut session, "STARTTLS\r\n"), ["503 5.5.1"]);
    let mut no_tls = Session::new(config(false), CLIENT.parse().unwrap(), false, None);
    outcome(&mut no_tls, "");
    assert_eq!(outcome(&mut no_tls, "STARTTLS\r\n"), ["454 4.7.0"]);
}

#[test]
fn starttls_discards_pipelined_plaintext_and_forgets_state() {
    let mut session = trusted();
    outcome(&mut session, "EHLO c\r\nMAIL FROM:<a@b.c>\r\n");
    // The injected EHLO and MAIL after STARTTLS travelled in clear: they must vanish.
    assert_eq!(
        outcome(
            &mut session,
            "STARTTLS\r\nEHLO x\r\nMAIL FROM:<evil@x.y>\r\n"
        ),
        ["220 2.0.0", "STARTTLS"]
    );
    session.tls_established(tls_info());
    assert_eq!(outcome(&mut session, ""), Vec::<String>::new());
    // EHLO state was forgotten: MAIL needs a new EHLO, and the old transaction is gone.
    assert_eq!(
        outcome(&mut session, "MAIL FROM:<a@b.c>\r\n"),
        ["503 5.5.1"]
    );
    assert_eq!(
        outcome(&mut session, "EHLO c\r\nMAIL FROM:<a@b.c>\r\n"),
        ["250", "250 2.1.0"]
    );
}

// ---- AUTH ---------------------------------------------------------------------------------------

#[test]
fn mail_before_auth_is_530_5_7_0_authentication_required() {
    let mut session = encrypted();
    let replies = replies_text(&mut session, "MAIL FROM:<a@b.c>\r\n");
    assert_eq!(replies, [reply::AUTH_REQUIRED]);
    assert_eq!(
        (replies[0].code(), replies[0].status()),
        (530, Some(reply::Status(5, 7, 0)))
    );
    assert_eq!(
        outcome(&mut session, "RCPT TO:<a@b.c>\r\nDATA\r\nVRFY x\r\n"),
        ["530 5.7.0", "530 5.7.0", "530 5.7.0"]
    );
}

#[test]
fn auth_plain_success_is_235_2_7_0() {
    let mut session = encrypted();
    let actions = outcome(
        &mut session,
        &format!("AUTH PLAIN {}\r\n", plain("alice@example.test", "s3cret")),
    );
    assert_eq!(actions, ["AUTHENTICATE alice@example.test s3cret"]);
    session.auth_finished(AuthOutcome::Accepted("alice@example.test".into()));
    assert_eq!(drain(&mut session), ["235 2.7.0"]);
}

#[test]
fn auth_bad_credentials_is_535_5_7_8_and_session_continues() {
    let mut session = encrypted();
    outcome(
        &mut session,
        &format!("AUTH PLAIN {}\r\n", plain("a@b.c", "wrong")),
    );
    session.auth_finished(AuthOutcome::Rejected);
    assert_eq!(drain(&mut session), ["535 5.7.8"]);
    assert_eq!(
        outcome(&mut session, "MAIL FROM:<a@b.c>\r\n"),
        ["530 5.7.0"]
    );
}

#[test]
fn auth_store_unavailable_is_454_4_7_0() {
    let mut session = encrypted();
    outcome(
        &mut session,
        &format!("AUTH PLAIN {}\r\n", plain("a@b.c", "pw")),
    );
    session.auth_finished(AuthOutcome::Unavailable);
    assert_eq!(drain(&mut session), ["454 4.7.0"]);
}

#[test]
fn auth_login_exchange() {
    let mut session = encrypted();
    assert_eq!(outcome(&mut session, "AUTH LOGIN\r\n"), ["334"]);
    assert_eq!(
        outcome(&mut session, &format!("{}\r\n", BASE64.encode("bob@b.c"))),
        ["334"]
    );
    assert_eq!(
        outcome(&mut session, &format!("{}\r\n", BASE64.encode("pw"))),
        ["AUTHENTICATE bob@b.c pw"]
    );
}

#[test]
fn auth_plain_without_initial_response_and_pipelined_commands_wait_for_the_outcome() {
    let mut session = encrypted();
    let input = format!(
        "AUTH PLAIN\r\n{}\r\nMAIL FROM:<a@b.c>\r\n",
        plain("a@b.c", "pw")
    );
    assert_eq!(
        outcome(&mut session, &input),
        ["334", "AUTHENTICATE a@b.c pw"]
    );
    session.auth_finished(AuthOutcome::Accepted("a@b.c".into()));
    assert_eq!(drain(&mut session), ["235 2.7.0", "250 2.1.0"]);
}

#[test]
fn auth_unknown_mechanism_bad_base64_and_cancel() {
    let mut session = encrypted();
    assert_eq!(
        outcome(&mut session, "AUTH CRAM-MD5\r\n"),
        ["DENIED \"\" mechanism-not-allowed", "504 5.5.4"]
    );
    assert_eq!(outcome(&mut session, "AUTH PLAIN %%%\r\n"), ["501 5.5.2"]);
    assert_eq!(
        outcome(&mut session, "AUTH LOGIN\r\n*\r\n"),
        ["334", "501 5.7.0"]
    );
    assert_eq!(
        outcome(&mut session, "AUTH PLAIN\r\n*\r\n"),
        ["334", "501 5.7.0"]
    );
}

#[test]
fn auth_with_foreign_authzid_is_535_5_7_8_without_checking() {
    let mut session = encrypted();
    let response = BASE64.encode("boss@b.c\0a@b.c\0pw");
    assert_eq!(
        outcome(&mut session, &format!("AUTH PLAIN {response}\r\n")),
        ["DENIED \"a@b.c\" authzid-not-allowed", "535 5.7.8"]
    );
}

#[test]
fn locked_login_is_454_4_7_0_with_the_time_and_counts_as_an_error() {
    let mut config = (*config(true)).clone();
    config.limits.max_errors = 3;
    let client = CLIENT.parse().unwrap();
    let mut session = Session::new(Arc::new(config), client, false, Some(tls_info()));
    session.next_action();
    outcome(&mut session, "EHLO client.example\r\n");
    let until = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_900_000_000);
    for n in 0..3 {
        outcome(
            &mut session,
            &format!("AUTH PLAIN {}\r\n", plain("a@b.c", "pw")),
        );
        session.auth_finished(AuthOutcome::Locked(until));
        let replies = replies_text(&mut session, "");
        assert_eq!(
            replies[0].to_string(),
            "454 4.7.0 Too many failed logins for this account from your network; try again after 2030-03-17T17:46:40Z"
        );
        if n == 2 {
            assert_eq!(replies[1].to_string(), reply::TOO_MANY_ERRORS.to_string());
            assert!(session.is_closed());
        }
    }
}

#[test]
fn network_refused_login_is_421_4_7_0_and_closes() {
    let mut session = encrypted();
    outcome(
        &mut session,
        &format!("AUTH PLAIN {}\r\n", plain("a@b.c", "pw")),
    );
    session.auth_finished(AuthOutcome::NetworkRefused);
    assert_eq!(drain(&mut session), ["421 4.7.0", "CLOSE"]);
    assert!(session.is_closed());
}

#[test]
fn login_at_a_host_not_serving_the_domain_is_554_5_7_1_naming_the_right_host() {
    let mut session = encrypted();
    outcome(
        &mut session,
        &format!("AUTH PLAIN {}\r\n", plain("u@b.test", "pw")),
    );
    session.auth_finished(AuthOutcome::ServedElsewhere {
        user: "u@b.test".into(),
        asked: "box.a.test".into(),
        serving: "box.b.test".into(),
    });
    let replies = replies_text(&mut session, "");
    assert_eq!(
        (replies[0].code(), replies[0].status()),
        (554, Some(reply::Status(5, 7, 1)))
    );
    assert_eq!(
        replies[0].text(),
        "Account <u@b.test> is served by box.b.test, not box.a.test: connect to box.b.test"
    );
    // Still not logged in: mail needs AUTH, and AUTH may be tried again.
    assert_eq!(
        outcome(&mut session, "MAIL FROM:<u@b.test>\r\n"),
        ["530 5.7.0"]
    );
    assert_eq!(
        outcome(
            &mut session,
            &format!("AUTH PLAIN {}\r\n", plain("u@b.test", "pw"))
        ),
        ["AUTHENTICATE u@b.test pw"]
    );
}

#[test]
fn auth_twice_or_inside_a_transaction_is_503_5_5_1() {
    let mut session = authenticated();
    assert_eq!(outcome(&mut session, "AUTH PLAIN\r\n"), ["503 5.5.1"]);
    let mut session = trusted();
    outcome(&mut session, "STARTTLS\r\n");
    session.tls_established(tls_info());
    assert_eq!(
        outcome(
            &mut session,
            "EHLO c\r\nMAIL FROM:<a@b.c>\r\nAUTH PLAIN\r\n"
        ),
        ["250", "250 2.1.0", "503 5.5.1"]
    );
}

#[test]
fn auth_before_ehlo_is_503_5_5_1() {
    let mut session = plaintext();
    outcome(&mut session, "STARTTLS\r\n");
    session.tls_established(tls_info());
    assert_eq!(outcome(&mut session, "AUTH PLAIN\r\n"), ["503 5.5.1"]);
}

#[test]
fn auth_line_too_long_is_500_5_5_6() {
    let mut session = encrypted();
    outcome(&mut session, "AUTH PLAIN\r\n");
    let long = "A".repeat(12_300);
    assert_eq!(outcome(&mut session, &format!("{long}\r\n")), ["500 5.5.6"]);
    // The exchange is over; the session reads commands again.
    assert_eq!(outcome(&mut session, "NOOP\r\n"), ["250 2.0.0"]);
}

// ---- the mail transaction -------------------------------------------------------------------------

#[test]
fn full_transaction_is_250_250_354_then_250_2_0_0_queued() {
    let mut session = authenticated();
    assert_eq!(
        outcome(
            &mut session,
            "MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n"
        ),
        ["250 2.1.0", "250 2.1.5", "354"]
    );
    let submission = take_submission(&mut session, "Subject: hi\r\n\r\n..dot\r\n.\r\n");
    assert_eq!(submission.envelope.from, "alice@example.test");
    assert_eq!(submission.envelope.to, ["bob@example.net"]);
    assert_eq!(
        submission.envelope.auth_user.as_deref(),
        Some("alice@example.test")
    );
    assert_eq!(submission.envelope.tls, Some(tls_info()));
    assert_eq!(submission.envelope.received_at, "2026-11-22T11:22:43Z");
    let text = String::from_utf8(submission.message).unwrap();
    assert!(text.starts_with("Received: from client.example ([192.0.2.7])\r\n\tby mx.example.test (Portcullis) with ESMTPSA\r\n"), "{text}");
    assert!(text.contains("\t(authenticated as alice@example.test)\r\n\tfor <bob@example.net>;\r\n\tSun, 22 Nov 2026 11:22:43 +0000\r\n"), "{text}");
    assert!(text.ends_with("Subject: hi\r\n\r\n.dot\r\n"));
    session.spool_finished(SpoolOutcome::Queued("ABC123".into()));
    let replies = replies_text(&mut session, "");
    assert_eq!(replies[0].to_wire(), "250 2.0.0 OK: queued as ABC123\r\n");
    // The transaction is over; a new one can start.
    assert_eq!(outcome(&mut session, "RCPT TO:<x@y.z>\r\n"), ["503 5.5.1"]);
}

/// Two authenticated sessions sharing a budget that holds one message (1000 octets and the
/// trace header) but not two.
fn sharing_a_budget_for_one_message() -> (Session, Session, Arc<MemoryBudget>) {
    let memory = MemoryBudget::new(1600);
    let shared = Arc::new(SessionConfig {
        memory: Arc::clone(&memory),
        ..(*config(true)).clone()
    });
    let sessions = (
        authenticated_with(Arc::clone(&shared)),
        authenticated_with(shared),
    );
    (sessions.0, sessions.1, memory)
}

const TO_DATA: &str = "MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n";

#[test]
fn data_beyond_the_memory_budget_is_452_4_3_1() {
    let (mut first, mut second, _memory) = sharing_a_budget_for_one_message();
    assert_eq!(
        outcome(&mut first, TO_DATA),
        ["250 2.1.0", "250 2.1.5", "354"]
    );
    let replies = replies_text(&mut second, TO_DATA);
    assert_eq!(
        replies[2].to_wire(),
        "452 4.3.1 Too much mail in flight on this server: send DATA again in a minute\r\n"
    );
    // The transaction survives: the client may send DATA again.
    assert_eq!(
        outcome(&mut second, "RCPT TO:<carol@example.net>\r\n"),
        ["250 2.1.5"]
    );
}

#[test]
fn the_memory_reservation_is_held_until_the_message_is_spooled() {
    let (mut first, mut second, memory) = sharing_a_budget_for_one_message();
    outcome(&mut first, TO_DATA);
    take_submission(&mut first, "Subject: hi\r\n\r\nbody\r\n.\r\n");
    assert_ne!(memory.reserved(), 0, "the message is still being spooled");
    first.spool_finished(SpoolOutcome::Queued("ABC123".into()));
    assert_eq!(memory.reserved(), 0);
    assert_eq!(
        outcome(&mut second, TO_DATA),
        ["250 2.1.0", "250 2.1.5", "354"]
    );
}

#[test]
fn a_refused_or_abandoned_message_gives_its_memory_back() {
    let (mut first, second, memory) = sharing_a_budget_for_one_message();
    outcome(&mut first, TO_DATA);
    assert_eq!(
        outcome(&mut first, &format!("{}\r\n.\r\n", "a".repeat(2000))),
        ["552 5.3.4"]
    );
    assert_eq!(memory.reserved(), 0);
    outcome(&mut first, TO_DATA);
    drop(first);
    assert_eq!(memory.reserved(), 0);
    drop(second);
}

#[test]
fn an_authenticated_sender_address_needs_the_policys_approval() {
    let mut session = authenticated();
    session.receive(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<b@c.d>\r\n");
    assert_eq!(
        drain_deciding(&mut session, None),
        ["AUTHORIZE alice@example.test alice@example.test"]
    );
    allow(&mut session);
    assert_eq!(drain(&mut session), ["250 2.1.0", "250 2.1.5"]);
}

#[test]
fn a_foreign_sender_is_553_5_7_1_naming_sender_and_user() {
    let mut session = authenticated();
    session.receive(b"MAIL FROM:<boss@example.test>\r\n");
    assert_eq!(
        drain_deciding(&mut session, Some(SenderDecision::Denied)),
        ["553 5.7.1"]
    );
    let replies = replies_text(&mut session, "");
    assert!(replies.is_empty());
    session.receive(b"MAIL FROM:<boss@example.test>\r\n");
    let mut text = String::new();
    while let Some(action) = session.next_action() {
        match action {
            Action::AuthorizeMail { .. } => {
                session.mail_checked(SenderDecision::Denied, Allowance::default())
            }
            Action::Send(reply) => text = reply.to_wire(),
            _ => {}
        }
    }
    assert!(
        text.starts_with(
            "553 5.7.1 Sender address <boss@example.test> not owned by user <alice@example.test>"
        ),
        "{text}"
    );
    // No transaction was opened.
    assert_eq!(outcome(&mut session, "RCPT TO:<x@y.z>\r\n"), ["503 5.5.1"]);
}

#[test]
fn sender_policy_unavailable_is_451_4_3_0() {
    let mut session = authenticated();
    session.receive(b"MAIL FROM:<alice@example.test>\r\n");
    assert_eq!(
        drain_deciding(&mut session, Some(SenderDecision::Unavailable)),
        ["451 4.3.0"]
    );
}

#[test]
fn null_sender_is_accepted_but_still_asks_about_quotas() {
    let mut session = authenticated();
    session.receive(b"MAIL FROM:<>\r\n");
    assert_eq!(
        drain_deciding(&mut session, None),
        ["AUTHORIZE alice@example.test "]
    );
    allow(&mut session);
    assert_eq!(drain(&mut session), ["250 2.1.0"]);
}

// ---- quotas --------------------------------------------------------------------------------

fn remaining(left: u64, limit: u64) -> Option<Remaining> {
    Some(Remaining {
        left,
        limit,
        resets: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_350_000),
    })
}

/// Sends `input` with MAIL answered: sender allowed, with `allowance`.
fn with_allowance(session: &mut Session, input: &str, allowance: Allowance) -> Vec<Reply> {
    session.receive(input.as_bytes());
    let mut replies = Vec::new();
    while let Some(action) = session.next_action() {
        match action {
            Action::AuthorizeMail { .. } => {
                session.mail_checked(SenderDecision::Allowed, allowance)
            }
            Action::Send(reply) => replies.push(reply),
            other => panic!("unexpected {other:?}"),
        }
    }
    replies
}

#[test]
fn no_messages_left_this_hour_is_451_4_7_1_with_the_reset_time() {
    let mut session = authenticated();
    let allowance = Allowance {
        messages: remaining(0, 100),
        recipients: None,
    };
    let replies = with_allowance(
        &mut session,
        "MAIL FROM:<alice@example.test>\r\n",
        allowance,
    );
    assert_eq!(
        replies[0].to_wire(),
        "451 4.7.1 Account <alice@example.test> reached its quota of 100 messages per hour; it resets at 2026-11-22T12:20:00Z, send the rest then\r\n"
    );
    assert_eq!(outcome(&mut session, "RCPT TO:<x@y.z>\r\n"), ["503 5.5.1"]);
    // A temporary refusal does not count towards the error limit.
    assert_eq!(session.errors, 1);
}

#[test]
fn recipients_beyond_the_days_quota_are_451_4_7_1_and_the_others_go() {
    let mut session = authenticated();
    let allowance = Allowance {
        messages: remaining(5, 100),
        recipients: remaining(2, 1000),
    };
    let replies = with_allowance(
        &mut session,
        "MAIL FROM:<alice@example.test>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\n",
        allowance,
    );
    let codes: Vec<String> = replies
        .iter()
        .map(|r| r.to_wire()[..9].to_string())
        .collect();
    assert_eq!(codes, ["250 2.1.0", "250 2.1.5", "250 2.1.5", "451 4.7.1"]);
    assert!(
        replies[3]
            .text()
            .contains("quota of 1000 recipients per day; it resets at 2026-11-22T12:20:00Z"),
        "{}",
        replies[3].text()
    );
    let submission = take_submission(&mut session, "DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n");
    assert_eq!(submission.envelope.to, ["a@x.test", "b@x.test"]);
}

#[test]
fn unauthenticated_trusted_clients_have_no_quota_to_ask_about() {
    let mut session = trusted();
    outcome(&mut session, "EHLO client.example\r\n");
    // Undecided, so that an AuthorizeMail would show up instead of being answered.
    session.receive(b"MAIL FROM:<a@b.c>\r\n");
    assert_eq!(drain_deciding(&mut session, None), ["250 2.1.0"]);
}

// ---- the From: header ------------------------------------------------------------------------

fn checking_header_from() -> Session {
    let mut config = (*config(true)).clone();
    config.check_header_from = true;
    authenticated_with(Arc::new(config))
}

const MESSAGE_FROM_BOSS: &str = "MAIL FROM:<alice@example.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nFrom: Boss <boss@example.test>, alice@example.test\r\nSubject: x\r\n\r\nhi\r\n.\r\n";

#[test]
fn header_from_addresses_are_checked_after_data() {
    let mut session = checking_header_from();
    assert_eq!(
        outcome(&mut session, MESSAGE_FROM_BOSS),
        [
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "AUTHORIZE FROM alice@example.test boss@example.test alice@example.test"
        ]
    );
    session.header_from_checked(HeaderFromDecision::Allowed);
    assert_eq!(drain(&mut session), ["SPOOL"]);
}

#[test]
fn a_foreign_header_from_is_550_5_7_1_and_nothing_is_spooled() {
    let mut session = checking_header_from();
    outcome(&mut session, MESSAGE_FROM_BOSS);
    session.header_from_checked(HeaderFromDecision::Denied("boss@example.test".into()));
    let replies = replies_text(&mut session, "");
    assert_eq!(
        replies[0].to_wire(),
        "550 5.7.1 From: header address <boss@example.test> not owned by user <alice@example.test>; put your own address in From: or ask the administrator to add it for you\r\n"
    );
    // The transaction is over.
    assert_eq!(outcome(&mut session, "RCPT TO:<x@y.z>\r\n"), ["503 5.5.1"]);
}

#[test]
fn header_from_check_unavailable_is_451_4_3_0() {
    let mut session = checking_header_from();
    outcome(&mut session, MESSAGE_FROM_BOSS);
    session.header_from_checked(HeaderFromDecision::Unavailable);
    assert_eq!(drain(&mut session), ["451 4.3.0"]);
}

#[test]
fn an_unreadable_header_from_is_550_5_7_1() {
    let mut session = checking_header_from();
    let replies = replies_text(
        &mut session,
        "MAIL FROM:<alice@example.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nFrom: Alice\r\n\r\nhi\r\n.\r\n",
    );
    let last = replies.last().unwrap().to_wire();
    assert!(
        last.starts_with("550 5.7.1 The From: header field cannot be read"),
        "{last}"
    );
}

#[test]
fn without_from_or_without_the_check_the_message_goes_to_the_spool() {
    let mut session = checking_header_from();
    assert_eq!(
        outcome(
            &mut session,
            "MAIL FROM:<alice@example.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n"
        ),
        ["250 2.1.0", "250 2.1.5", "354", "SPOOL"]
    );
    let mut session = authenticated();
    assert_eq!(
        outcome(&mut session, MESSAGE_FROM_BOSS),
        ["250 2.1.0", "250 2.1.5", "354", "SPOOL"]
    );
}

#[test]
fn spool_failure_is_452_4_3_1_never_250() {
    let mut session = authenticated();
    outcome(
        &mut session,
        "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n",
    );
    take_submission(&mut session, "x\r\n.\r\n");
    session.spool_finished(SpoolOutcome::Failed);
    assert_eq!(drain(&mut session), ["452 4.3.1"]);
    assert_eq!(
        outcome(&mut session, "MAIL FROM:<a@b.c>\r\n"),
        ["250 2.1.0"]
    );
}

#[test]
fn bad_sequence_is_503_5_5_1() {
    let mut session = authenticated();
    assert_eq!(outcome(&mut session, "RCPT TO:<a@b.c>\r\n"), ["503 5.5.1"]);
    assert_eq!(outcome(&mut session, "DATA\r\n"), ["503 5.5.1"]);
    assert_eq!(
        outcome(&mut session, "MAIL FROM:<a@b.c>\r\nDATA\r\n"),
        ["250 2.1.0", "503 5.5.1"]
    );
    assert_eq!(
        outcome(&mut session, "MAIL FROM:<a@b.c>\r\n"),
        ["503 5.5.1"]
    );
    let mut fresh = trusted();
    assert_eq!(outcome(&mut fresh, "MAIL FROM:<a@b.c>\r\n"), ["503 5.5.1"]);
}

#[test]
fn unknown_command_is_500_5_5_2_and_bad_syntax_501_5_5_4() {
    let mut session = plaintext();
    assert_eq!(
        outcome(&mut session, "XYZZY\r\nEHLO\r\n"),
        ["500 5.5.2", "501 5.5.4"]
    );
}

#[test]
fn bad_sender_is_501_5_1_7_and_bad_recipient_501_5_1_3() {
    let mut session = authenticated();
    assert_eq!(
        outcome(&mut session, "MAIL FROM:<not an address>\r\n"),
        ["501 5.1.7"]
    );
    assert_eq!(
        outcome(&mut session, "MAIL FROM:<a@b.c>\r\nRCPT TO:<@@>\r\n"),
        ["250 2.1.0", "501 5.1.3"]
    );
}

#[test]
fn a_non_ascii_parameter_is_not_echoed() {
    let mut session = authenticated();
    let replies = replies_text(&mut session, "MAIL FROM:<a@b.c> X-\u{202E}é=1\r\n");
    assert_eq!(
        replies[0].to_wire(),
        "555 5.5.4 Parameter X-??=1 not recognized or not implemented\r\n"
    );
}

#[test]
fn a_sender_with_a_text_direction_mark_is_501_5_1_7() {
    let mut session = authenticated();
    let replies = replies_text(
        &mut session,
        "EHLO c\r\nMAIL FROM:<ad\u{202E}nim@b.c> SMTPUTF8\r\n",
    );
    let refusal = replies.last().unwrap();
    assert_eq!(
        (refusal.code(), refusal.status()),
        (501, Some(reply::Status(5, 1, 7)))
    );
    assert!(
        refusal
            .text()
            .contains("invisible or text-direction character")
    );
    assert!(!refusal.text().contains('\u{202E}'));
}

#[test]
fn unknown_mail_parameter_is_555_5_5_4() {
    let mut session = authenticated();
    assert_eq!(
        outcome(&mut session, "MAIL FROM:<a@b.c> MT-PRIORITY=3\r\n"),
        ["555 5.5.4"]
    );
    assert_eq!(
        outcome(
            &mut session,
            "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f> RET=FULL\r\n"
        ),
        ["250 2.1.0", "555 5.5.4"]
    );
}

#[test]
fn command_line_too_long_is_500_5_5_6_and_memory_stays_bounded() {
    let mut session = plaintext();
    let long = format!("NOOP {}\r\n", "x".repeat(1100));
    assert_eq!(outcome(&mut session, &long), ["500 5.5.6"]);
    // A line that never ends is discarded as it arrives, not buffered.
    for _ in 0..100 {
        assert_eq!(
            outcome(&mut session, &"y".repeat(10_000)),
            Vec::<String>::new()
        );
    }
    assert!(
        session.input.len() < 20_000,
        "buffer grew to {}",
        session.input.len()
    );
    assert_eq!(
        outcome(&mut session, "\r\nNOOP\r\n"),
        ["500 5.5.6", "250 2.0.0"]
    );
}

#[test]
fn a_line_of_exactly_512_octets_is_accepted() {
    let mut session = plaintext();
    let line = format!("NOOP {}\r\n", "x".repeat(512 - 7));
    assert_eq!(line.len(), 512);
    assert_eq!(outcome(&mut session, &line), ["250 2.0.0"]);
}

#[test]
fn a_line_of_513_octets_is_500_5_5_6_unless_it_is_mail() {
    let mut session = plaintext();
    let line = format!("NOOP {}\r\n", "x".repeat(513 - 7));
    assert_eq!(line.len(), 513);
    let replies = replies_text(&mut session, &line);
    assert_eq!(
        replies[0].to_wire(),
        "500 5.5.6 Command line too long; this server accepts 512 octets including CRLF (RFC 5321 §4.5.3.1.4)\r\n"
    );
    // The session goes on.
    assert_eq!(outcome(&mut session, "NOOP\r\n"), ["250 2.0.0"]);
}

#[test]
fn mail_may_use_the_whole_parameter_allowance_and_no_more() {
    let mut session = authenticated();
    let mail = |length: usize| {
        let head = "MAIL FROM:<alice@example.test> X=";
        format!("{head}{}\r\n", "y".repeat(length - head.len() - 2))
    };
    // 512 + 646 octets: read as a command (the unknown parameter is what is refused) ...
    assert_eq!(outcome(&mut session, &mail(1158)), ["555 5.5.4"]);
    // ... one more is too long.
    assert_eq!(outcome(&mut session, &mail(1159)), ["500 5.5.6"]);
}

#[test]
fn rcpt_may_use_the_dsn_parameter_allowance_and_no_more() {
    let mut session = authenticated();
    outcome(&mut session, "MAIL FROM:<a@b.c>\r\n");
    let rcpt = |length: usize| {
        let head = "RCPT TO:<x@y.z> X=";
        format!("{head}{}\r\n", "y".repeat(length - head.len() - 2))
    };
    // 512 + 500 octets (RFC 3461) ...
    assert_eq!(outcome(&mut session, &rcpt(1012)), ["555 5.5.4"]);
    // ... one more is too long.
    assert_eq!(outcome(&mut session, &rcpt(1013)), ["500 5.5.6"]);
    // ORCPT with the longest address it may carry, and NOTIFY, fit.
    let orcpt = format!(
        "RCPT TO:<x@y.z> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;{}@b.example\r\n",
        "a".repeat(490)
    );
    assert!(orcpt.len() > 512, "{}", orcpt.len());
    assert_eq!(outcome(&mut session, &orcpt), ["250 2.1.5"]);
}

#[test]
fn mail_with_every_extension_parameter_may_exceed_512_octets() {
    let mut session = authenticated();
    let address = format!(
        "{}@{}.{}.{}.example",
        "a".repeat(64),
        "b".repeat(60),
        "c".repeat(60),
        "d".repeat(50)
    );
    let line =
        format!("MAIL FROM:<{address}> SIZE=999 BODY=8BITMIME SMTPUTF8 AUTH=<{address}>\r\n");
    assert!(line.len() > 512, "{}", line.len());
    assert_eq!(outcome(&mut session, &line), ["250 2.1.0"]);
}

#[test]
fn extensions_after_helo_are_refused() {
    let mut session = trusted();
    assert_eq!(
        outcome(&mut session, "HELO c\r\nMAIL FROM:<a@b.c> SIZE=10\r\n"),
        ["250", "555 5.5.4"]
    );
    assert_eq!(
        outcome(&mut session, "MAIL FROM:<a@b.c> BODY=8BITMIME\r\n"),
        ["555 5.5.4"]
    );
    assert_eq!(
        outcome(&mut session, "MAIL FROM:<a@b.c>\r\n"),
        ["250 2.1.0"]
    );
    let mut session = plaintext();
    outcome(&mut session, "STARTTLS\r\n");
    session.tls_established(tls_info());
    assert_eq!(
        outcome(&mut session, "HELO c\r\nAUTH PLAIN\r\n"),
        ["250", "503 5.5.1"]
    );
}

#[test]
fn endless_noop_eventually_counts_as_errors() {
    let mut session = trusted();
    let mut rendered = Vec::new();
    for _ in 0..(JUNK_COMMAND_LIMIT + 20) {
        rendered.extend(outcome(&mut session, "NOOP\r\n"));
    }
    assert!(
        rendered[..rendered.len() - 2]
            .iter()
            .all(|r| r == "250 2.0.0")
    );
    assert_eq!(rendered[rendered.len() - 2..], ["421 4.7.0", "CLOSE"]);
}

#[test]
fn received_names_the_utf8_protocol_for_smtputf8_transactions() {
    let mut session = authenticated();
    outcome(
        &mut session,
        "MAIL FROM:<jörg@example.test> SMTPUTF8\r\nRCPT TO:<b@c.d>\r\nDATA\r\n",
    );
    let submission = take_submission(&mut session, "x\r\n.\r\n");
    let text = String::from_utf8(submission.message).unwrap();
    assert!(text.contains("with UTF8SMTPSA\r\n"), "{text}");
}

#[test]
fn too_many_recipients_is_452_4_5_3_and_earlier_ones_are_kept() {
    let mut session = authenticated();
    let input = "MAIL FROM:<a@b.c>\r\nRCPT TO:<1@b.c>\r\nRCPT TO:<2@b.c>\r\nRCPT TO:<3@b.c>\r\nRCPT TO:<4@b.c>\r\nDATA\r\n";
    assert_eq!(
        outcome(&mut session, input),
        [
            "250 2.1.0",
            "250 2.1.5",
            "250 2.1.5",
            "250 2.1.5",
            "452 4.5.3",
            "354"
        ]
    );
    let submission = take_submission(&mut session, "x\r\n.\r\n");
    assert_eq!(submission.envelope.to, ["1@b.c", "2@b.c", "3@b.c"]);
}

#[test]
fn declared_size_over_the_limit_is_552_5_3_4() {
    let mut session = authenticated();
    assert_eq!(
        outcome(&mut session, "MAIL FROM:<a@b.c> SIZE=1001\r\n"),
        ["552 5.3.4"]
    );
    assert_eq!(
        outcome(&mut session, "MAIL FROM:<a@b.c> SIZE=1000\r\n"),
        ["250 2.1.0"]
    );
}

#[test]
fn body_over_the_limit_is_552_5_3_4_after_the_final_dot() {
    let mut session = authenticated();
    outcome(
        &mut session,
        "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n",
    );
    let body = format!(
        "{}.\r\nNOOP\r\n",
        format!("{}\r\n", "x".repeat(900)).repeat(2)
    );
    assert_eq!(outcome(&mut session, &body), ["552 5.3.4", "250 2.0.0"]);
}

#[test]
fn non_ascii_address_without_smtputf8_is_553_5_6_7() {
    let mut session = authenticated();
    assert_eq!(
        outcome(&mut session, "MAIL FROM:<jörg@example.test>\r\n"),
        ["553 5.6.7"]
    );
    assert_eq!(
        outcome(
            &mut session,
            "MAIL FROM:<a@b.c>\r\nRCPT TO:<ü@b.c>\r\nRSET\r\n"
        ),
        ["250 2.1.0", "553 5.6.7", "250 2.0.0"]
    );
    assert_eq!(
        outcome(
            &mut session,
            "MAIL FROM:<jörg@example.test> SMTPUTF8\r\nRCPT TO:<ü@b.c>\r\n"
        ),
        ["250 2.1.0", "250 2.1.5"]
    );
}

fn with_bare_line_endings(mode: BareLineEndings) -> Arc<SessionConfig> {
    let base = config(true);
    Arc::new(SessionConfig {
        limits: Limits {
            bare_line_endings: mode,
            ..base.limits.clone()
        },
        ..(*base).clone()
    })
}

/// An authenticated session in DATA.
fn in_data(mode: BareLineEndings) -> Session {
    let mut session = authenticated_with(with_bare_line_endings(mode));
    outcome(
        &mut session,
        "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n",
    );
    session
}

const SMUGGLE: &str =
    "x\n.\nMAIL FROM:<e@x.y>\r\nRCPT TO:<v@x.y>\r\nDATA\r\nsmuggled\r\n.\r\nNOOP\r\n";

#[test]
fn bare_line_endings_in_data_are_554_5_6_0_when_rejected_and_nothing_is_spooled() {
    let mut session = in_data(BareLineEndings::Reject);
    assert_eq!(
        replies_text(&mut session, SMUGGLE),
        [reply::BARE_LINE_ENDING_IN_DATA, reply::OK]
    );
}

/// Normalised, the smuggling attempt is part of the one message, stored with CRLF line ends.
#[test]
fn bare_lf_in_data_is_stored_as_crlf_when_normalized() {
    let mut session = in_data(BareLineEndings::Normalize);
    let submission = take_submission(&mut session, SMUGGLE);
    let expected: &[u8] =
        b"\r\nx\r\n.\r\nMAIL FROM:<e@x.y>\r\nRCPT TO:<v@x.y>\r\nDATA\r\nsmuggled\r\n";
    assert!(
        submission.message.ends_with(expected),
        "{:?}",
        String::from_utf8_lossy(&submission.message)
    );
    session.spool_finished(SpoolOutcome::Queued("Q1".into()));
    assert_eq!(drain(&mut session), ["250 2.0.0", "250 2.0.0"]);
}

#[test]
fn bare_cr_and_nul_in_data_are_554_5_6_0_in_both_modes() {
    for mode in [BareLineEndings::Normalize, BareLineEndings::Reject] {
        let bare_cr = match mode {
            BareLineEndings::Normalize => reply::BARE_CR_IN_DATA,
            BareLineEndings::Reject => reply::BARE_LINE_ENDING_IN_DATA,
        };
        let mut session = in_data(mode);
        assert_eq!(replies_text(&mut session, "a\rb\r\n.\r\n"), [bare_cr]);
        let mut session = in_data(mode);
        assert_eq!(
            replies_text(&mut session, "a\x00b\r\n.\r\n"),
            [reply::NUL_IN_DATA]
        );
    }
}

#[test]
fn text_line_too_long_is_554_5_6_0() {
    let mut session = Session::new(
        Arc::new(SessionConfig {
            limits: Limits {
                max_message_size: 10_000,
                ..config(true).limits.clone()
            },
            ..(*config(true)).clone()
        }),
        CLIENT.parse().unwrap(),
        true,
        None,
    );
    outcome(&mut session, "");
    outcome(
        &mut session,
        "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n",
    );
    assert_eq!(
        outcome(&mut session, &format!("{}\r\n.\r\n", "x".repeat(999))),
        ["554 5.6.0"]
    );
}

#[test]
fn rset_and_noop_are_250_2_0_0() {
    let mut session = authenticated();
    assert_eq!(
        outcome(
            &mut session,
            "MAIL FROM:<a@b.c>\r\nRSET\r\nNOOP\r\nMAIL FROM:<a@b.c>\r\n"
        ),
        ["250 2.1.0", "250 2.0.0", "250 2.0.0", "250 2.1.0"]
    );
}

#[test]
fn vrfy_after_auth_is_252_2_5_0_and_expn_is_502_5_5_1() {
    let mut session = authenticated();
    assert_eq!(
        outcome(&mut session, "VRFY alice\r\nEXPN staff\r\n"),
        ["252 2.5.0", "502 5.5.1"]
    );
}

#[test]
fn help_works_at_any_stage() {
    let mut session = plaintext();
    assert_eq!(
        outcome(&mut session, "HELP\r\nHELP mail\r\nHELP nothing\r\n"),
        ["214 2.0.0", "214 2.0.0", "504 5.5.4"]
    );
    let mut session = authenticated();
    outcome(&mut session, "MAIL FROM:<a@b.c>\r\n");
    assert_eq!(outcome(&mut session, "HELP RCPT\r\n"), ["214 2.0.0"]);
}

#[test]
fn pipelined_replies_come_in_order() {
    let mut session = authenticated();
    let input = "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nRCPT TO:<bad>\r\nDATA\r\nbody\r\n.\r\nMAIL FROM:<a@b.c>\r\n";
    assert_eq!(
        outcome(&mut session, input),
        ["250 2.1.0", "250 2.1.5", "501 5.1.3", "354", "SPOOL"]
    );
    session.spool_finished(SpoolOutcome::Queued("Q1".into()));
    assert_eq!(drain(&mut session), ["250 2.0.0", "250 2.1.0"]);
}

// ---- delivery status notification parameters (RFC 3461) ------------------------------------------

fn notify(value: &str) -> RecipientDsn {
    RecipientDsn {
        notify: Some(value.into()),
        orcpt: None,
    }
}

#[test]
fn dsn_parameters_fill_the_envelope_with_one_entry_per_recipient_in_order() {
    let mut session = authenticated();
    let input = "MAIL FROM:<alice@example.test> RET=hdrs ENVID=abc+2Bdef\r\n\
                 RCPT TO:<a@x.test> NOTIFY=success,failure ORCPT=rfc822;orig+40example.test\r\n\
                 RCPT TO:<b@x.test>\r\n\
                 RCPT TO:<c@x.test> notify=never\r\n";
    assert_eq!(
        outcome(&mut session, input),
        ["250 2.1.0", "250 2.1.5", "250 2.1.5", "250 2.1.5"]
    );
    let envelope = take_submission(&mut session, "DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n").envelope;
    assert_eq!(envelope.ret.as_deref(), Some("HDRS"));
    assert_eq!(envelope.envid.as_deref(), Some("abc+def"));
    assert_eq!(envelope.to, ["a@x.test", "b@x.test", "c@x.test"]);
    assert_eq!(
        envelope.dsn,
        [
            RecipientDsn {
                notify: Some("SUCCESS,FAILURE".into()),
                orcpt: Some("rfc822;orig@example.test".into()),
            },
            RecipientDsn::default(),
            notify("NEVER"),
        ]
    );
}

#[test]
fn without_dsn_parameters_the_envelope_has_none_and_stores_none() {
    let mut session = authenticated();
    let envelope = take_submission(
        &mut session,
        "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nRCPT TO:<g@h.i>\r\nDATA\r\nx\r\n.\r\n",
    )
    .envelope;
    assert_eq!((&envelope.ret, &envelope.envid), (&None, &None));
    assert!(envelope.dsn.is_empty());
    let stored = serde_json::to_value(&envelope).unwrap();
    for field in ["ret", "envid", "dsn"] {
        assert!(stored.get(field).is_none(), "{field} in {stored}");
    }
}

#[test]
fn ret_alone_or_envid_alone_leaves_the_recipient_entries_empty() {
    let mut session = authenticated();
    let envelope = take_submission(
        &mut session,
        "MAIL FROM:<a@b.c> ENVID=QQ314159\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\n",
    )
    .envelope;
    assert_eq!(envelope.envid.as_deref(), Some("QQ314159"));
    assert_eq!(envelope.ret, None);
    assert!(envelope.dsn.is_empty());
}

#[test]
fn refused_recipients_leave_no_dsn_entry_behind() {
    // At most 3 recipients: the fourth is refused with 452, the malformed one with 501.
    let mut session = authenticated();
    let input = "MAIL FROM:<a@b.c>\r\n\
                 RCPT TO:<1@b.c> NOTIFY=DELAY\r\n\
                 RCPT TO:<x@b.c> NOTIFY=ALWAYS\r\n\
                 RCPT TO:<2@b.c>\r\n\
                 RCPT TO:<3@b.c>\r\n\
                 RCPT TO:<4@b.c> NOTIFY=SUCCESS\r\n";
    assert_eq!(
        outcome(&mut session, input),
        [
            "250 2.1.0",
            "250 2.1.5",
            "501 5.5.4",
            "250 2.1.5",
            "250 2.1.5",
            "452 4.5.3"
        ]
    );
    let envelope = take_submission(&mut session, "DATA\r\nx\r\n.\r\n").envelope;
    assert_eq!(envelope.to, ["1@b.c", "2@b.c", "3@b.c"]);
    assert_eq!(
        envelope.dsn,
        [
            notify("DELAY"),
            RecipientDsn::default(),
            RecipientDsn::default()
        ]
    );
}

#[test]
fn rset_forgets_the_dsn_parameters() {
    let mut session = authenticated();
    outcome(
        &mut session,
        "MAIL FROM:<a@b.c> RET=FULL\r\nRCPT TO:<d@e.f> NOTIFY=NEVER\r\nRSET\r\n",
    );
    let envelope = take_submission(
        &mut session,
        "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\n",
    )
    .envelope;
    assert_eq!(envelope.ret, None);
    assert!(envelope.dsn.is_empty());
}

#[test]
fn malformed_dsn_parameters_are_501_5_5_4_and_the_transaction_goes_on() {
    let mut session = authenticated();
    let replies = replies_text(
        &mut session,
        "MAIL FROM:<a@b.c> RET=ALL\r\n\
         MAIL FROM:<a@b.c> ENVID=a+2b\r\n\
         MAIL FROM:<a@b.c> RET=FULL ret=FULL\r\n\
         MAIL FROM:<a@b.c> RET=FULL\r\n\
         RCPT TO:<d@e.f> NOTIFY=NEVER,SUCCESS\r\n\
         RCPT TO:<d@e.f> NOTIFY=DELAY,DELAY\r\n\
         RCPT TO:<d@e.f> ORCPT=d@e.f\r\n\
         RCPT TO:<d@e.f> ORCPT=rfc822;d+40e.f ORCPT=rfc822;d+40e.f\r\n\
         RCPT TO:<d@e.f> NOTIFY=FAILURE\r\n",
    );
    let lines: Vec<String> = replies.iter().map(Reply::to_wire).collect();
    assert_eq!(
        lines,
        [
            "501 5.5.4 Syntax error: RET takes FULL or HDRS; send RET=FULL to get the whole message back in a bounce, RET=HDRS for its header only (RFC 3461 §4.3)\r\n",
            "501 5.5.4 Syntax error: ENVID must be xtext of printable ASCII, with + written +2B and = written +3D (upper-case hex), e.g. ENVID=QQ314159 (RFC 3461 §4.4)\r\n",
            "501 5.5.4 Syntax error; usage: each MAIL parameter at most once\r\n",
            "250 2.1.0 Sender <a@b.c> OK\r\n",
            "501 5.5.4 Syntax error: NOTIFY=NEVER cannot be combined with SUCCESS, FAILURE or DELAY; send NEVER alone or a list without it (RFC 3461 §4.1)\r\n",
            "501 5.5.4 Syntax error: NOTIFY names a keyword twice; name each of SUCCESS, FAILURE and DELAY at most once (RFC 3461 §4.1)\r\n",
            "501 5.5.4 Syntax error: ORCPT must be an address type, a semicolon and the address, e.g. ORCPT=rfc822;alice@example.com (RFC 3461 §4.2)\r\n",
            "501 5.5.4 Syntax error; usage: each RCPT parameter at most once\r\n",
            "250 2.1.5 Recipient <d@e.f> OK\r\n",
        ]
    );
    let envelope = take_submission(&mut session, "DATA\r\nx\r\n.\r\n").envelope;
    assert_eq!(envelope.ret.as_deref(), Some("FULL"));
    assert_eq!(envelope.dsn, [notify("FAILURE")]);
}

#[test]
fn dsn_parameters_after_helo_are_555_5_5_4() {
    let mut session = trusted();
    let replies = replies_text(
        &mut session,
        "HELO c\r\n\
         MAIL FROM:<a@b.c> RET=FULL\r\n\
         MAIL FROM:<a@b.c> ENVID=x\r\n\
         MAIL FROM:<a@b.c>\r\n\
         RCPT TO:<d@e.f> NOTIFY=NEVER\r\n\
         RCPT TO:<d@e.f> ORCPT=rfc822;d+40e.f\r\n\
         RCPT TO:<d@e.f> NOTIFY=NEVER,NEVER\r\n\
         RCPT TO:<d@e.f>\r\n",
    );
    let lines: Vec<String> = replies.iter().map(Reply::to_wire).collect();
    assert_eq!(
        lines[1..],
        [
            "555 5.5.4 Parameter RET needs the session to start with EHLO, not HELO\r\n",
            "555 5.5.4 Parameter ENVID needs the session to start with EHLO, not HELO\r\n",
            "250 2.1.0 Sender <a@b.c> OK\r\n",
            "555 5.5.4 Parameter NOTIFY needs the session to start with EHLO, not HELO\r\n",
            "555 5.5.4 Parameter ORCPT needs the session to start with EHLO, not HELO\r\n",
            // A malformed value is a syntax error first, as for SIZE after HELO.
            "501 5.5.4 Syntax error: NOTIFY names a keyword twice; name each of SUCCESS, FAILURE and DELAY at most once (RFC 3461 §4.1)\r\n",
            "250 2.1.5 Recipient <d@e.f> OK\r\n",
        ]
    );
}

// ---- session end ----------------------------------------------------------------------------------

#[test]
fn too_many_errors_is_421_4_7_0_and_close() {
    let mut session = plaintext();
    let mut rendered = Vec::new();
    for _ in 0..20 {
        rendered.extend(outcome(&mut session, "BOGUS\r\n"));
    }
    assert_eq!(rendered.len(), 22);
    assert_eq!(
        &rendered[18..],
        ["500 5.5.2", "500 5.5.2", "421 4.7.0", "CLOSE"]
    );
    assert_eq!(outcome(&mut session, "NOOP\r\n"), Vec::<String>::new());
}

#[test]
fn idle_timeout_is_421_4_4_2_and_close() {
    let mut session = plaintext();
    session.timed_out();
    assert_eq!(drain(&mut session), ["421 4.4.2", "CLOSE"]);
}

#[test]
fn shutdown_is_421_4_3_2_and_close() {
    let mut session = plaintext();
    session.shut_down();
    assert_eq!(drain(&mut session), ["421 4.3.2", "CLOSE"]);
}

#[test]
fn data_arriving_in_pieces_leaves_the_next_command_buffered() {
    let mut session = trusted();
    outcome(
        &mut session,
        "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n",
    );
    assert!(session.in_data());
    assert_eq!(outcome(&mut session, "line one\r\n."), Vec::<String>::new());
    assert_eq!(outcome(&mut session, "\r\nQUIT\r\n"), ["SPOOL"]);
    session.spool_finished(SpoolOutcome::Queued("Q".into()));
    assert_eq!(drain(&mut session), ["250 2.0.0", "221 2.0.0", "CLOSE"]);
}

#[test]
fn commands_are_counted_by_verb_across_starttls() {
    let mut session = authenticated();
    outcome(
        &mut session,
        "mail FROM:<alice@example.test>\r\nBOGUS\r\nQUIT\r\n",
    );
    assert_eq!(
        session.command_counts().to_string(),
        "ehlo=1 starttls=1 auth=1 mail=1 quit=1 unknown=1 commands=6"
    );
}

#[test]
fn each_reply_is_attributed_to_the_command_it_answers() {
    let mut session = Session::new(config(true), CLIENT.parse().unwrap(), false, None);
    assert_eq!(
        session.next_action().map(|_| session.answering()),
        Some("CONNECT")
    );
    session.receive(b"EHLO client.example\r\nMAIL FROM:<a@example.test>\r\n");
    let mut answered = Vec::new();
    while let Some(action) = session.next_action() {
        if let Action::Send(reply) = action {
            answered.push((session.answering(), reply.code()));
        }
    }
    assert_eq!(answered, [("EHLO", 250), ("MAIL", 530)]);
    session.timed_out();
    assert_eq!(session.answering(), "TIMEOUT");
    assert!(session.command_counts().get(Verb::Unknown) == 0);
}

#[test]
fn mail_auth_parameter_is_555_5_5_4_where_auth_is_not_offered() {
    let text = "555 5.5.4 MAIL parameter AUTH= is not allowed: this session was not offered AUTH (it needs EHLO after TLS)";
    let mut session = trusted();
    assert_eq!(
        outcome(&mut session, "EHLO c\r\nMAIL FROM:<a@b.c> AUTH=<>\r\n"),
        ["250", "555 5.5.4"]
    );
    let replies = replies_text(&mut session, "MAIL FROM:<a@b.c> AUTH=<>\r\n");
    assert_eq!(replies[0].to_string(), text);
    let mut session = authenticated();
    assert_eq!(
        outcome(&mut session, "MAIL FROM:<a@b.c> AUTH=<>\r\n"),
        ["250 2.1.0"]
    );
}
