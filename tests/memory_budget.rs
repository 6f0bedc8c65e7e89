//! `[limits] max_memory_in_flight` over real connections: DATA past the budget is refused
//! with 452 4.3.1, and the budget comes back when a message is queued.

mod common;

use common::{Options, Raw, Server};

/// Room for two messages of 1 MiB in DATA at once, not three.
const LIMITS: &str = "[limits]\nmax_message_size = 1048576\nmax_memory_in_flight = 2621440\n";

fn to_data(server: &Server) -> (Raw, String) {
    let mut client = Raw::connect(server.submission);
    client.expect("220 ");
    client.send(b"EHLO client.example\r\n");
    client.expect("250 ");
    client.send(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
    client.expect("250 2.1.0");
    client.expect("250 2.1.5");
    let reply = client.reply();
    (client, reply)
}

#[test]
fn data_past_the_memory_budget_is_452_4_3_1_until_a_message_is_queued() {
    let server = Server::start(
        "memory-budget",
        Options {
            trusted_networks: r#"["127.0.0.0/8"]"#,
            extra: LIMITS.to_string(),
            ..Options::default()
        },
    );
    let (mut first, first_reply) = to_data(&server);
    let (_second, second_reply) = to_data(&server);
    let (mut third, third_reply) = to_data(&server);
    assert!(first_reply.starts_with("354 "), "{first_reply}");
    assert!(second_reply.starts_with("354 "), "{second_reply}");
    assert_eq!(
        third_reply,
        "452 4.3.1 Too much mail in flight on this server: send DATA again in a minute"
    );
    first.send(b"Subject: budget\r\n\r\nbody\r\n.\r\n");
    first.expect("250 2.0.0 OK: queued as ");
    // The transaction was kept: DATA again now finds room.
    third.send(b"DATA\r\n");
    third.expect("354 ");
}
