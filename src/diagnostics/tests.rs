use clap::Parser;

use super::explain::{
    ExplainArgs, ExplainError, Explanation, explain, render_json, render_text, run,
};
use super::knowledge::{self, RetryAdvice};
use super::query::{self, Enhanced, Query};

/// The IANA registry's enumerated codes, as copied into the test data (see its header).
const IANA_LIST: &str = include_str!("../../tests/data/iana-enhanced-status-codes.txt");

/// RFC 5321 §4.2.3, RFC 3207, RFC 4954: the reply codes the issue requires.
const REQUIRED_BASIC: &[u16] = &[
    211, 214, 220, 221, 235, 250, 251, 252, 334, 354, 421, 432, 450, 451, 452, 454, 455, 500, 501,
    502, 503, 504, 530, 534, 535, 538, 550, 551, 552, 553, 554, 555,
];

fn iana_codes() -> Vec<&'static str> {
    IANA_LIST
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

fn explained(input: &str) -> Explanation {
    match explain(input) {
        Ok(explanation) => explanation,
        Err(error) => panic!("{input:?} was not explained: {error}"),
    }
}

fn combination_title(input: &str) -> Option<String> {
    explained(input).combination.map(|c| c.title)
}

fn code(class: Option<u8>, subject: u16, detail: u16) -> Option<Enhanced> {
    Some(Enhanced {
        class,
        subject,
        detail,
    })
}

// ---- The knowledge base --------------------------------------------------------------------------

#[test]
fn the_embedded_knowledge_base_parses_and_is_consistent() {
    if let Err(message) = knowledge::get() {
        panic!("{message}");
    }
}

#[test]
fn a_broken_knowledge_base_is_reported_not_accepted() {
    assert!(knowledge::parse("basic = 3").is_err());
    let source = include_str!("codes.toml");
    let dangling = source.replacen("code = \"214\"", "code = \"299\"", 1);
    let error = knowledge::parse(&dangling).err().unwrap_or_default();
    assert!(error.contains("299"), "{error}");
}

#[test]
fn every_code_of_the_iana_registry_is_explained() {
    let kb = knowledge::get().expect("knowledge base");
    let codes = iana_codes();
    assert_eq!(
        codes.len(),
        81,
        "the test data holds the registry's 81 codes"
    );
    for code in &codes {
        let entry = kb.enhanced.iter().find(|e| e.code == *code);
        assert!(
            entry.is_some_and(|e| e.registered()),
            "{code} is missing from codes.toml"
        );
        for class in ["2", "4", "5"] {
            let concrete = code.replacen('X', class, 1);
            assert!(explain(&concrete).is_ok(), "{concrete} is not explained");
        }
    }
}

#[test]
fn no_code_is_presented_as_registered_unless_iana_lists_it() {
    let kb = knowledge::get().expect("knowledge base");
    let codes = iana_codes();
    for entry in kb.enhanced.iter().filter(|e| e.registered()) {
        assert!(
            codes.contains(&entry.code.as_str()),
            "{} is not in the IANA list",
            entry.code
        );
    }
}

#[test]
fn every_required_basic_code_is_explained() {
    for &code in REQUIRED_BASIC {
        let explanation = explained(&code.to_string());
        let entry = explanation.basic.and_then(|b| b.entry);
        assert!(entry.is_some(), "{code} has no entry");
    }
}

#[test]
fn every_reply_portcullis_sends_is_explained_consistently() {
    for line in portcullis_replies() {
        let line = line.as_str();
        let explanation = explained(line);
        assert!(explanation.consistent, "{line}: {:?}", explanation.notes);
        assert!(
            explanation.notes.is_empty(),
            "{line}: {:?}",
            explanation.notes
        );
        assert!(explanation.basic.and_then(|b| b.entry).is_some(), "{line}");
        if explanation.reply.enhanced.is_some() {
            assert!(
                explanation.enhanced.and_then(|e| e.entry).is_some(),
                "{line}"
            );
        }
    }
}

/// Every reply the server can send, each as the last line a client would report (a multi-line
/// reply is quoted by its last line).
fn portcullis_replies() -> Vec<String> {
    crate::smtp::reply::catalogue()
        .iter()
        .map(|reply| {
            reply
                .to_wire()
                .trim_end()
                .rsplit("\r\n")
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// The reply the server sends that starts with `prefix`.
fn portcullis_reply(prefix: &str) -> String {
    portcullis_replies()
        .into_iter()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no reply starts with {prefix:?}"))
}

#[test]
fn portcullis_replies_get_their_specific_meaning() {
    let cases = [
        (
            "530 5.7.0 Must issue a STARTTLS",
            "TLS has not been started",
        ),
        ("530 5.7.0 Authentication required", "Not logged in"),
        ("535 5.7.8", "Wrong user name or password"),
        (
            "454 4.7.0 Temporary authentication",
            "Temporary authentication failure",
        ),
        ("454 4.7.0 TLS not available", "TLS temporarily unavailable"),
        ("421 4.7.0 Too many errors", "Closed after too many errors"),
        (
            "454 4.7.0 Too many failed logins",
            "Login locked after too many failed logins",
        ),
        (
            "421 4.7.0 Too many failed logins",
            "Network refused after failed logins for many users",
        ),
        (
            "421 4.7.0 Too many connections from",
            "Too many connections",
        ),
        ("421 4.4.2", "Closed after a timeout"),
        ("421 4.3.2", "Server shutting down"),
        ("452 4.3.1", "Server out of storage: message not accepted"),
        ("250 2.0.0 OK: queued", "Message accepted"),
        (
            "554 5.6.0 Message refused: it contains a bare CR or LF",
            "Message refused: lines must end with CRLF",
        ),
        (
            "554 5.6.0 Message refused: it contains a bare CR (",
            "Message refused: a carriage return without a line feed",
        ),
        (
            "554 5.6.0 Message refused: it contains a NUL",
            "Message refused: a NUL byte in the message",
        ),
        (
            "554 5.6.0 Message refused: a line is longer",
            "Message refused for its content",
        ),
        (
            "550 5.7.1 From: header address",
            "From: header address not allowed for this login",
        ),
        (
            "550 5.7.1 The From: header field cannot be read",
            "From: header address not allowed for this login",
        ),
        (
            "451 4.7.1 Account <me@example.com> reached its quota of 100 messages",
            "Sending quota reached for this account",
        ),
        (
            "451 4.7.1 Account <me@example.com> reached its quota of 1000 recipients",
            "Sending quota reached for this account",
        ),
        (
            "554 5.7.1 Account <",
            "Right password, wrong server: connect to the host that serves your domain",
        ),
        (
            "501 5.5.4 Syntax error: RET",
            "Malformed delivery status notification (DSN) parameter",
        ),
        (
            "501 5.5.4 Syntax error: ENVID is longer",
            "Malformed delivery status notification (DSN) parameter",
        ),
        (
            "501 5.5.4 Syntax error: NOTIFY=NEVER",
            "Malformed delivery status notification (DSN) parameter",
        ),
        (
            "501 5.5.4 Syntax error: the ORCPT address is longer",
            "Malformed delivery status notification (DSN) parameter",
        ),
    ];
    for (prefix, title) in cases {
        let line = portcullis_reply(prefix);
        assert_eq!(combination_title(&line).as_deref(), Some(title), "{line}");
    }
}

#[test]
fn a_specific_meaning_keeps_the_general_sections_brief() {
    let plain = render_text(
        &explained("535 5.7.8 Authentication credentials invalid"),
        false,
    );
    assert!(plain.contains("What this reply means: Wrong user name or password"));
    assert!(plain.contains("Reply code 535: Authentication credentials invalid"));
    assert!(!plain.contains("Causes"), "{plain}");
    assert!(plain.contains("`portcullis explain 535` and"), "{plain}");
}

// ---- Issue 11's explain entries ------------------------------------------------------------------

/// Rendered text with its line wrapping undone, to look for a phrase.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn a_temporary_policy_refusal_is_not_explained_as_relaying() {
    let explanation = explained("451 4.7.1");
    assert_eq!(
        explanation.combination.as_ref().map(|c| c.title.as_str()),
        Some("Refused for now by policy")
    );
    assert_eq!(explanation.retry.advice, RetryAdvice::Yes);
    let plain = render_text(&explanation, false);
    assert!(
        !plain.contains("Only useful as a permanent failure"),
        "{plain}"
    );
    assert!(
        !plain.contains("send through your own submission server"),
        "{plain}"
    );
}

#[test]
fn five_five_four_five_seven_one_is_short_and_specific() {
    let plain = render_text(&explained("554 5.7.1"), false);
    assert!(plain.contains("What this reply means: Refused by policy"));
    assert!(
        plain.lines().count() < 40,
        "{} lines:\n{plain}",
        plain.lines().count()
    );
}

#[test]
fn five_seven_zero_names_the_failed_logins_lock() {
    let plain = flat(&render_text(&explained("5.7.0"), false));
    assert!(
        plain.contains("454 4.7.0 Too many failed logins"),
        "{plain}"
    );
}

#[test]
fn ehlo_first_says_to_send_ehlo_again_after_starttls() {
    let line = portcullis_reply("503 5.5.1 Bad sequence of commands: send EHLO first");
    let plain = flat(&render_text(&explained(&line), false));
    assert!(plain.contains("send EHLO again after STARTTLS"), "{plain}");
}

#[test]
fn a_failed_login_points_the_admin_at_the_log_and_accounts_show() {
    for input in ["535", "535 5.7.8 Authentication credentials invalid"] {
        let plain = flat(&render_text(&explained(input), false));
        assert!(plain.contains("reason=REASON"), "{input}: {plain}");
        assert!(
            plain.contains("portcullis accounts show EMAIL"),
            "{input}: {plain}"
        );
    }
}

// ---- The big providers' replies ------------------------------------------------------------------

#[test]
fn provider_replies_are_recognised_by_their_codes_and_text() {
    let cases = [
        (
            "550-5.7.26 Unauthenticated email from example.org is not accepted due to the domain's DMARC policy",
            "DMARC policy rejection (Gmail and others)",
        ),
        (
            "550 5.7.26 This mail is unauthenticated",
            "Unauthenticated sender (Gmail)",
        ),
        (
            "421-4.7.28 Unusual rate of mail from your IP",
            "Rate limited: unusual volume or spam rate (Gmail)",
        ),
        (
            "550 5.7.28 unusual rate of unsolicited mail",
            "Blocked: unusual rate of unsolicited mail (Gmail)",
        ),
        (
            "550 5.7.25 The sending IP has no PTR record",
            "Reverse DNS (PTR) check failed",
        ),
        (
            "550 5.7.27 The sender does not pass SPF",
            "SPF did not pass (Gmail)",
        ),
        (
            "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred",
            "Temporarily deferred for volume or complaints (Yahoo)",
        ),
        (
            "554 5.7.9 Message not accepted for policy reasons",
            "Not accepted for policy reasons (Yahoo)",
        ),
        (
            "550 5.7.1 messages from [192.0.2.1] weren't sent (S3150)",
            "Sending IP on Microsoft's block list (Outlook.com)",
        ),
        (
            "451 4.7.650 The mail server has been temporarily rate limited",
            "Rate limited for IP reputation (Microsoft)",
        ),
        (
            "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP",
            "Traffic from this IP not accepted (Microsoft)",
        ),
        (
            "550 5.7.509 Access denied, sending domain does not pass DMARC",
            "DMARC policy rejection (Microsoft)",
        ),
        (
            "554 5.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org",
            "Sending IP or domain listed by Spamhaus",
        ),
        (
            "554 5.7.1 Client host [192.0.2.1] blocked using bl.example.net",
            "Sending IP on a blocklist",
        ),
        (
            "554 delivery error: dd This user doesn't have an account",
            "Recipient does not exist",
        ),
        (
            "452-4.2.2 The recipient's inbox is out of storage space",
            "Recipient's mailbox is full",
        ),
        (
            "552 5.3.4 Your message exceeded the message size limits",
            "Message too big",
        ),
    ];
    for (line, title) in cases {
        assert_eq!(combination_title(line).as_deref(), Some(title), "{line}");
    }
}

#[test]
fn an_enhanced_code_with_text_alone_fits_only_through_its_text() {
    assert_eq!(
        combination_title("5.7.26 unauthenticated").as_deref(),
        Some("Unauthenticated sender (Gmail)")
    );
    assert_eq!(combination_title("5.7.26"), None);
}

// ---- Parsing every input form --------------------------------------------------------------------

#[test]
fn parses_a_basic_code_an_enhanced_code_and_both() {
    let parse = |input| query::parse(input).expect(input);
    assert_eq!(
        parse("530"),
        Query {
            basic: Some(530),
            enhanced: None,
            text: None
        }
    );
    assert_eq!(parse("5.7.0").enhanced, code(Some(5), 7, 0));
    assert_eq!(parse("5.7.0").basic, None);
    assert_eq!(parse("X.7.8").enhanced, code(None, 7, 8));
    assert_eq!(parse("x.1.10").enhanced, code(None, 1, 10));
    let both = parse("530 5.7.8");
    assert_eq!(
        (both.basic, both.enhanced, both.text),
        (Some(530), code(Some(5), 7, 8), None)
    );
}

#[test]
fn parses_a_whole_reply_line() {
    let line = query::parse("530 5.7.0 Must issue a STARTTLS command first").expect("line");
    assert_eq!(line.basic, Some(530));
    assert_eq!(line.enhanced, code(Some(5), 7, 0));
    assert_eq!(
        line.text.as_deref(),
        Some("Must issue a STARTTLS command first")
    );
    let no_enhanced = query::parse("530 Must issue a STARTTLS command first").expect("line");
    assert_eq!(no_enhanced.enhanced, None);
    assert_eq!(
        no_enhanced.text.as_deref(),
        Some("Must issue a STARTTLS command first")
    );
    let enhanced_only = query::parse("5.7.8 Authentication credentials invalid").expect("line");
    assert_eq!(
        (enhanced_only.basic, enhanced_only.enhanced),
        (None, code(Some(5), 7, 8))
    );
}

#[test]
fn tolerates_swaks_prefixes_quotes_whitespace_and_continuations() {
    let expected = (Some(535), code(Some(5), 7, 8));
    for input in [
        "<-  535 5.7.8 Authentication credentials invalid",
        "<~  535 5.7.8 Authentication credentials invalid",
        "<** 535 5.7.8 Authentication credentials invalid",
        "<~* 535 5.7.8 Authentication credentials invalid",
        "  \"535 5.7.8 Authentication credentials invalid\"  ",
        "'<~* 535 5.7.8 Authentication credentials invalid'",
        "`535 5.7.8`",
        "\t535-5.7.8 Authentication credentials invalid\r\n",
    ] {
        let parsed = query::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!((parsed.basic, parsed.enhanced), expected, "{input:?}");
    }
    let continuation = query::parse("250-2.0.0 OK").expect("continuation");
    assert_eq!(
        (continuation.basic, continuation.enhanced),
        (Some(250), code(Some(2), 0, 0))
    );
    assert_eq!(query::parse("250-").expect("bare").basic, Some(250));
}

#[test]
fn joins_the_text_of_a_pasted_multi_line_reply() {
    let pasted =
        "530-5.5.1 Authentication Required. Learn more at\n530 5.5.1 https://example.com/help";
    let parsed = query::parse(pasted).expect("multi-line");
    assert_eq!(
        parsed.text.as_deref(),
        Some("Authentication Required. Learn more at https://example.com/help")
    );
}

#[test]
fn keeps_dotted_numbers_in_the_text_as_text() {
    let parsed = query::parse("554 192.0.2.1 is listed").expect("line");
    assert_eq!(
        (parsed.enhanced, parsed.text.as_deref()),
        (None, Some("192.0.2.1 is listed"))
    );
}

// ---- Specific answers ----------------------------------------------------------------------------

#[test]
fn explains_530() {
    let explanation = explained("530");
    let entry = explanation.basic.and_then(|b| b.entry).expect("530 entry");
    assert_eq!(entry.title, "Authentication or TLS required");
    assert!(entry.meaning.contains("TLS") && entry.meaning.contains("logged in"));
    assert!(entry.confused_with.iter().any(|c| c.code == "535"));
    assert!(entry.confused_with.iter().any(|c| c.code == "503"));
    assert!(explanation.combination.is_none());
    assert_eq!(explanation.retry.advice, RetryAdvice::AfterFix);
}

#[test]
fn explains_5_7_8_as_wrong_credentials() {
    let explanation = explained("5.7.8");
    let part = explanation.enhanced.expect("enhanced part");
    assert_eq!(
        (part.code.as_str(), part.pattern.as_str()),
        ("5.7.8", "X.7.8")
    );
    assert!(part.registered);
    let entry = part.entry.expect("X.7.8 entry");
    assert_eq!(entry.title, "Authentication credentials invalid");
    assert_eq!(entry.registry_basic, vec![535, 554]);
    assert_eq!(explanation.retry.advice, RetryAdvice::AfterFix);
}

#[test]
fn a_starttls_line_means_tls_was_not_started() {
    let explanation = explained("530 5.7.0 Must issue a STARTTLS command first");
    let combination = explanation.combination.expect("combination");
    assert_eq!(combination.title, "TLS has not been started");
    assert!(combination.means.contains("has not started TLS"));
    assert!(explanation.consistent);
    let text = render_text(
        &explained("530 5.7.0 Must issue a STARTTLS command first"),
        false,
    );
    assert!(
        text.contains("What this reply means: TLS has not been started"),
        "{text}"
    );
}

#[test]
fn the_text_distinguishes_the_two_meanings_of_530_5_7_0() {
    assert_eq!(
        combination_title("530 5.7.0 Authentication required").as_deref(),
        Some("Not logged in")
    );
    assert_eq!(
        combination_title("530 5.7.0").as_deref(),
        Some("TLS or login required (the text tells which)")
    );
    assert_eq!(
        combination_title("530 Must issue a STARTTLS command first").as_deref(),
        Some("TLS has not been started")
    );
    let gmail = "530-5.5.1 Authentication Required. Learn more at";
    assert_eq!(combination_title(gmail).as_deref(), Some("Not logged in"));
    let opensmtpd = "530 5.5.1 Invalid command: Must issue a STARTTLS command first";
    assert_eq!(
        combination_title(opensmtpd).as_deref(),
        Some("TLS has not been started")
    );
    assert_eq!(
        combination_title("530 5.5.1").as_deref(),
        Some("TLS or login required (non-standard enhanced code)")
    );
}

#[test]
fn explains_the_well_known_combinations() {
    let cases = [
        ("535 5.7.8", "Wrong user name or password"),
        (
            "535 5.7.139 Authentication unsuccessful",
            "SMTP AUTH disabled (Microsoft 365)",
        ),
        ("454 4.7.0", "TLS or authentication temporarily unavailable"),
        ("421 4.7.0", "Connection closed by policy"),
        (
            "553 5.7.1 <a@example.com>: Sender address rejected: not owned by user b",
            "Sender address not allowed for this login",
        ),
        ("550 5.7.1", "Refused by policy: relaying denied or blocked"),
        (
            "554 5.7.1 <x@example.org>: Relay access denied",
            "Relaying denied",
        ),
        ("552 5.3.4", "Message too big"),
        ("452 4.3.1", "Server out of storage: message not accepted"),
        (
            "452 4.5.3 Too many recipients",
            "Too many recipients in this message",
        ),
    ];
    for (input, title) in cases {
        assert_eq!(combination_title(input).as_deref(), Some(title), "{input}");
    }
}

#[test]
fn a_vendor_code_is_explained_but_marked_as_not_standard() {
    let explanation = explained("5.7.139");
    let part = explanation.enhanced.expect("enhanced part");
    assert!(!part.registered);
    assert_eq!(
        part.entry.and_then(|e| e.vendor).as_deref(),
        Some("Microsoft 365")
    );
    assert!(explanation.notes.iter().any(|n| n.contains("not standard")));
}

#[test]
fn an_inconsistent_class_is_reported() {
    let explanation = explained("530 4.7.0");
    assert!(!explanation.consistent);
    let note = explanation.notes.join(" ");
    assert!(
        note.contains("Inconsistent") && note.contains("530"),
        "{note}"
    );
    assert!(render_text(&explanation, false).contains("Inconsistent"));
    assert!(!explained("250 5.0.0").consistent);
    assert!(!explained("354 2.0.0").consistent);
    assert!(explained("530 5.7.0").consistent);
}

#[test]
fn unknown_parts_of_a_known_reply_are_noted() {
    let explanation = explained("550 5.7.999 Blocked");
    assert!(explanation.basic.and_then(|b| b.entry).is_some());
    assert!(
        explanation
            .notes
            .iter()
            .any(|n| n.contains("5.7.999") && n.contains("security or policy"))
    );
    let deprecated = explained("5.6.10");
    assert!(deprecated.notes.iter().any(|n| n.contains("deprecated")));
}

// ---- Errors --------------------------------------------------------------------------------------

#[test]
fn unknown_and_malformed_codes_give_a_clear_error() {
    let message = |input: &str| {
        explain(input)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(matches!(
        explain("599"),
        Err(ExplainError::InvalidBasic { .. })
    ));
    assert!(message("599").contains("599 is not an SMTP reply code"));
    assert!(message("599").contains("2xx-5xx"));
    assert!(matches!(
        explain("5.9.9"),
        Err(ExplainError::InvalidEnhanced { .. })
    ));
    assert!(message("5.9.9").contains("subject"));
    assert!(matches!(explain("hello"), Err(ExplainError::NotACode(_))));
    assert!(message("hello").contains("--list"));
    assert!(matches!(explain("  "), Err(ExplainError::Empty)));
    assert!(matches!(
        explain("100"),
        Err(ExplainError::InvalidBasic { .. })
    ));
    assert!(matches!(
        explain("3.0.0"),
        Err(ExplainError::InvalidEnhanced { .. })
    ));
    assert!(matches!(explain("5300"), Err(ExplainError::NotACode(_))));
    assert!(matches!(
        explain("5.7"),
        Err(ExplainError::InvalidEnhanced { .. })
    ));
}

#[test]
fn a_well_formed_unknown_code_alone_is_an_error_that_reads_its_digits() {
    let error = explain("523").expect_err("523 is not defined");
    assert!(matches!(
        error,
        ExplainError::UnknownBasic { code: 523, .. }
    ));
    assert!(
        error.to_string().contains("permanent negative completion"),
        "{error}"
    );
    let error = explain("5.7.999").expect_err("5.7.999 is not registered");
    assert!(error.to_string().contains("security or policy"), "{error}");
}

// ---- Output --------------------------------------------------------------------------------------

#[test]
fn text_output_has_every_section_and_colours_only_when_asked() {
    // No combination fits 550 with 5.7.8, so both codes are explained in full.
    let explanation = explained("550 5.7.8 Authentication credentials invalid");
    assert!(explanation.combination.is_none());
    let plain = render_text(&explanation, false);
    for section in [
        "Retry?",
        "Reply code 550: Mailbox unavailable",
        "Enhanced status code 5.7.8 (X.7.8): Authentication credentials invalid",
        "first 5",
        "subject 7",
        "Not to be confused with",
        "In the wild",
        "RFC 4954 §6",
    ] {
        assert!(plain.contains(section), "missing {section:?} in\n{plain}");
    }
    assert!(!plain.contains('\x1b'));
    assert!(
        plain.lines().all(|line| line.chars().count() <= 100),
        "{plain}"
    );
    assert!(render_text(&explanation, true).contains("\x1b["));
}

#[test]
fn json_output_is_valid_and_complete() {
    let json = render_json(&explained("530 5.7.0 Must issue a STARTTLS command first"));
    let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(value["reply"]["basic"], 530);
    assert_eq!(value["reply"]["enhanced"], "5.7.0");
    assert_eq!(value["combination"]["title"], "TLS has not been started");
    assert_eq!(
        value["basic"]["entry"]["title"],
        "Authentication or TLS required"
    );
    assert_eq!(value["enhanced"]["pattern"], "X.7.0");
    assert_eq!(value["retry"]["advice"], "after_fix");
    assert_eq!(value["consistent"], true);
}

#[test]
fn list_has_one_line_per_code() {
    let kb = knowledge::get().expect("knowledge base");
    let listing = run(&args(&["--list"]), false).expect("list");
    assert_eq!(listing.lines().count(), kb.basic.len() + kb.enhanced.len());
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("530") && l.contains("Authentication or TLS required"))
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("X.7.8 ") && l.contains("credentials"))
    );
    let position = |code: &str| listing.lines().position(|l| l.starts_with(code));
    assert!(position("X.1.9 ") < position("X.1.10 "), "numeric order");
}

// ---- The command ---------------------------------------------------------------------------------

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ExplainArgs,
}

fn args(words: &[&str]) -> ExplainArgs {
    let argv = std::iter::once("explain").chain(words.iter().copied());
    match Cli::try_parse_from(argv) {
        Ok(cli) => cli.args,
        Err(error) => panic!("{words:?}: {error}"),
    }
}

#[test]
fn the_command_joins_words_and_reads_its_flags() {
    let parsed = args(&[
        "530", "5.7.0", "Must", "issue", "a", "STARTTLS", "command", "first", "--json",
    ]);
    assert!(parsed.json);
    assert_eq!(parsed.code.len(), 8);
    let output = run(&parsed, false).expect("explained");
    assert!(output.contains("\"TLS has not been started\""));
    let swaks = args(&["--json", "<~*", "535", "5.7.8"]);
    assert!(swaks.json);
    assert!(
        run(&swaks, false)
            .expect("explained")
            .contains("Wrong user name or password")
    );
    assert!(args(&["--list"]).list);
}

#[test]
fn the_command_lists_explains_and_fails_clearly() {
    let listing = run(&args(&["--list"]), false).expect("list");
    assert!(listing.contains("X.7.30"));
    let text = run(&args(&["530"]), true).expect("text");
    assert!(text.contains("\x1b[") && text.ends_with('\n'));
    let error = run(&args(&["599"]), false).expect_err("599");
    assert!(error.contains("599 is not an SMTP reply code"));
    assert!(
        run(&args(&[]), false)
            .expect_err("nothing")
            .contains("nothing to explain")
    );
}
