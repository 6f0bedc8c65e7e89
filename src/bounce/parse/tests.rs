use super::*;

fn sample(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/bounces/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parsed(message: &[u8]) -> Bounce {
    parse(message).unwrap_or_else(|e| panic!("not parsed: {e}"))
}

fn addresses_of(bounce: &Bounce) -> Vec<&str> {
    bounce
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect()
}

#[test]
fn a_dsn_gives_each_failed_or_delayed_recipient_with_its_fields() {
    let bounce = parsed(&sample("rfc3464.eml"));
    assert_eq!(bounce.form, Form::Rfc3464);
    assert_eq!(bounce.reporting_mta.as_deref(), Some("mta.example.org"));
    // carol@example.com was delivered; dave@ is only in the returned headers.
    assert_eq!(
        addresses_of(&bounce),
        ["nobody@example.com", "full@example.net", "fast@example.net"]
    );
    let full = &bounce.recipients[1];
    assert_eq!(full.action.as_deref(), Some("delayed"));
    assert_eq!(full.status.as_deref(), Some("4.2.2"));
    assert_eq!(full.remote_mta.as_deref(), Some("mx.example.net"));
    assert_eq!(
        full.reply.as_deref(),
        Some(
            "452-4.2.2 The mailbox of this recipient has no space left.\n452 4.2.2 Ask them to delete some mail."
        )
    );
}

#[test]
fn a_recipient_without_diagnostic_code_takes_its_reply_from_the_text() {
    let bounce = parsed(&sample("rfc3464.eml"));
    assert_eq!(
        bounce.recipients[0].reply.as_deref(),
        Some("550 5.1.1 User unknown")
    );
}

#[test]
fn a_dsn_with_only_deliveries_is_not_a_failure() {
    let dsn = b"Content-Type: multipart/report; boundary=\"b\"\n\n--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; a.example\n\nFinal-Recipient: rfc822; x@example.com\nAction: delivered\nStatus: 2.0.0\n\n--b--\n";
    assert_eq!(parse(dsn), Err(ParseError::NoFailures { reported: 1 }));
}

#[test]
fn text_with_no_address_and_reply_is_nothing_found() {
    assert_eq!(
        parse(b"Subject: hello\n\nJust a letter to bob@example.com.\n"),
        Err(ParseError::NothingFound)
    );
    assert!(
        ParseError::NothingFound
            .to_string()
            .contains("portcullis explain")
    );
}

#[test]
fn a_joined_multi_line_reply_is_split_back_into_lines() {
    assert_eq!(
        split_joined_reply("550-5.1.1 The account does not exist. 550 5.1.1 Check the address."),
        "550-5.1.1 The account does not exist.\n550 5.1.1 Check the address."
    );
    assert_eq!(split_joined_reply("550 no codes"), "550 no codes");
}

#[test]
fn utf8_addresses_and_types_are_decoded() {
    assert_eq!(
        decode_utf8_addr("j\\x{F6}rg@example.com"),
        "jörg@example.com"
    );
    assert_eq!(
        typed_value("rfc822; <bob@example.com>"),
        "<bob@example.com>"
    );
    assert_eq!(typed_value("smtp; 550 5.1.1 x; y"), "550 5.1.1 x; y");
}

#[test]
fn quoted_printable_and_base64_parts_are_decoded() {
    assert_eq!(quoted_printable("a=3Db cou=\nld\n"), "a=b could\n\n");
    assert_eq!(decode("aGVsbG8=\n", "base64"), "hello");
}

#[test]
fn exim_text_with_a_multi_line_gmail_reply() {
    let bounce = parsed(&sample("gmail-5.7.26.eml"));
    assert_eq!(bounce.form, Form::Text);
    assert_eq!(addresses_of(&bounce), ["bob@gmail.example"]);
    let bob = &bounce.recipients[0];
    let reply = bob.reply.as_deref().unwrap_or_default();
    assert_eq!(reply.lines().count(), 3, "{reply}");
    assert!(reply.starts_with("550-5.7.26 Unauthenticated"), "{reply}");
    assert_eq!(
        bob.remote_mta.as_deref(),
        Some("gmail-smtp-in.l.google.example")
    );
}

#[test]
fn gmail_text_names_the_recipient_in_a_sentence() {
    let bounce = parsed(&sample("gmail-address-not-found.eml"));
    assert_eq!(addresses_of(&bounce), ["nobody@example.net"]);
    assert!(
        bounce.recipients[0]
            .reply
            .as_deref()
            .is_some_and(|r| r.starts_with("550 5.1.1") && r.ends_with("virtual mailbox table"))
    );
}

#[test]
fn exchange_text_pairs_each_address_with_its_remote_server_reply() {
    let bounce = parsed(&sample("microsoft-ndr.eml"));
    assert_eq!(
        addresses_of(&bounce),
        ["bob@contoso.example", "carol@outlook.example"]
    );
    assert_eq!(
        bounce.recipients[0].reply.as_deref(),
        Some(
            "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"
        )
    );
    assert!(
        bounce.recipients[1]
            .reply
            .as_deref()
            .is_some_and(|r| r.contains("(S3150).") && !r.ends_with('\''))
    );
}

#[test]
fn qmail_style_text_from_yahoo() {
    let bounce = parsed(&sample("yahoo.eml"));
    assert_eq!(
        addresses_of(&bounce),
        ["dave@yahoo.example", "erin@yahoo.example"]
    );
    assert!(
        bounce.recipients[1]
            .reply
            .as_deref()
            .is_some_and(|r| r.starts_with("421 4.7.0 [TSS04]"))
    );
}

#[test]
fn postfix_text_wrapped_onto_indented_lines_is_one_reply() {
    let bounce = parsed(&sample("postfix.eml"));
    assert_eq!(bounce.form, Form::Rfc3464);
    let text = read_text(
        "<frank@example.net>: host mx.example.net[192.0.2.26] said: 554 5.7.1\n    Service unavailable; blocked using\n    zen.spamhaus.org (in reply to\n    RCPT TO command)\n\nnext paragraph\n",
    );
    assert_eq!(text.len(), 1);
    assert_eq!(
        text[0].reply.as_deref(),
        Some("554 5.7.1 Service unavailable; blocked using zen.spamhaus.org")
    );
    assert_eq!(text[0].remote_mta.as_deref(), Some("mx.example.net"));
}

#[test]
fn header_lines_and_the_returned_original_name_no_recipient() {
    let text = "From: alice@example.org\nTo: bob@example.com\n\n<carol@example.com>:\n550 5.1.1 unknown\n--- Below this line is a copy of the message.\n\n<dave@example.com>:\n550 5.1.1 unknown\n";
    let found = read_text(text);
    let names: Vec<&str> = found.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(names, ["carol@example.com"]);
}

#[test]
fn prose_numbers_are_not_replies() {
    assert_eq!(
        reply_start("We waited 450 minutes for bob@example.com"),
        None
    );
    assert_eq!(reply_start("(reason: 550 5.1.1 User unknown)"), Some(9));
    assert_eq!(
        reply_start("Remote host said: 554 delivery error"),
        Some(18)
    );
}

#[test]
fn a_pasted_bounce_without_headers_is_read_as_text() {
    let pasted = b"Your message wasn't delivered to x@example.com because the address couldn't be found.\n\nThe response was:\n\n550 5.1.1 The email account that you tried to reach does not exist.\n";
    let bounce = parsed(pasted);
    assert_eq!(bounce.form, Form::Text);
    assert_eq!(addresses_of(&bounce), ["x@example.com"]);
}

#[test]
fn an_html_only_bounce_is_read_without_its_tags() {
    let html = b"Content-Type: text/html\n\n<p><b>bob@example.com</b></p><p>Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found'</p>";
    let bounce = parsed(html);
    assert_eq!(addresses_of(&bounce), ["bob@example.com"]);
    assert_eq!(
        bounce.recipients[0].reply.as_deref(),
        Some("550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found")
    );
}
