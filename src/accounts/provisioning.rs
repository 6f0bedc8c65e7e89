//! The provisioning CSV: one row per mailbox with `host`, `port`, `username` and `password`,
//! the file mailbox providers hand to sending platforms. This module checks an imported file
//! against the rules below and writes the files `provision` and `export` produce; the CLI
//! (`src/cli/provisioning.rs`) does the hashing and the store does the transaction.
//!
//! Rules (README, "Provisioning CSV"):
//! - the first record is the header; names are matched case-insensitively after trimming
//!   spaces; `host`, `port`, `username` and `password` must each appear once, in any order;
//!   other columns are ignored; every row must have as many fields as the header;
//! - rows whose fields are all empty are skipped (spreadsheet leftovers such as `,,,`);
//! - `host`, `port` and `username` are trimmed; the password is taken exactly as written;
//! - `username` is the full address (matched case-insensitively) and appears at most once;
//! - its domain must be in the domains table, unless domains may be created;
//! - when the domain has a configured host, `host` must equal it (case-insensitive, a final
//!   dot ignored); `port` must be a submission port: 587, 465, 2587 or 2465;
//! - the password must not be empty or weak ([`password::weakness`]);
//! - a password with whitespace at either end or invisible characters anywhere is imported
//!   as written, with a warning: clients that drop or mangle them get 535.

use std::collections::HashMap;

use super::csv::{self, Record};
use super::{domain_of, same_host};
use crate::auth::{canonical_username, password};
use crate::smtp::address;

/// The columns, in the order `provision` writes them.
pub const COLUMNS: [&str; 4] = ["host", "port", "username", "password"];
/// Ports accepted in the `port` column: submission with STARTTLS and with implicit TLS, and
/// Portcullis's unprivileged defaults for both.
pub const SUBMISSION_PORTS: [u16; 4] = [587, 465, 2587, 2465];
/// The port `provision` and `export` write.
pub const DEFAULT_PORT: u16 = 587;

/// A row that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub line: usize,
    pub host: String,
    pub port: u16,
    /// Lower-cased.
    pub address: String,
    pub password: String,
}

/// An error or warning about one line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub line: usize,
    pub message: String,
}

impl Issue {
    fn new(line: usize, message: impl Into<String>) -> Issue {
        Issue {
            line,
            message: message.into(),
        }
    }
}

/// The outcome of checking a file. Nothing may be imported unless `errors` is empty.
#[derive(Debug, Default)]
pub struct Checked {
    pub rows: Vec<Row>,
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
    /// Domains the rows need that are not in the store yet (only with `create_domains`).
    pub new_domains: Vec<String>,
    /// Rows refused: one error may stand for many (a domain not found is reported once).
    pub bad_rows: usize,
}

/// What an import may do beyond the strict rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules {
    /// Create the domains not known yet, instead of refusing their rows.
    pub create_domains: bool,
    /// Import weak passwords with a warning, instead of refusing their rows.
    pub allow_weak: bool,
}

/// Checks the content of a provisioning file. `domains` maps every known domain (lower case)
/// to its configured host.
pub fn check(bytes: &[u8], domains: &HashMap<String, Option<String>>, rules: &Rules) -> Checked {
    let mut checked = Checked::default();
    let records = match csv::decode(bytes).and_then(csv::parse) {
        Ok(records) => records,
        Err(error) => {
            checked.errors.push(Issue::new(error.line, error.message));
            return checked;
        }
    };
    let Some((header, rows)) = records.split_first() else {
        checked.errors.push(Issue::new(
            1,
            format!(
                "the file is empty; the first line must be the header {}",
                COLUMNS.join(",")
            ),
        ));
        return checked;
    };
    let columns = match columns(header) {
        Ok(columns) => columns,
        Err(message) => {
            checked.errors.push(Issue::new(header.line, message));
            return checked;
        }
    };
    let mut seen = Seen::default();
    for record in rows {
        if record.fields.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let checked_row = check_row(
            record,
            header.fields.len(),
            &columns,
            domains,
            rules,
            &mut seen,
            &mut checked,
        );
        if let Some(row) = checked_row {
            let domain = domain_of(&row.address).unwrap_or_default();
            if !domains.contains_key(domain) && !checked.new_domains.iter().any(|d| d == domain) {
                checked.new_domains.push(domain.to_string());
            }
            checked.rows.push(row);
        } else {
            checked.bad_rows += 1;
        }
    }
    report_unknown_domains(seen.unknown_domains, &mut checked);
    checked
}

/// What earlier rows showed, for the checks across rows.
#[derive(Default)]
struct Seen {
    /// Each username's first line.
    first_line_of: HashMap<String, usize>,
    /// Each unknown domain's first line and how many rows name it, in order of appearance.
    unknown_domains: Vec<(String, usize, usize)>,
}

/// One error per unknown domain, on its first line: a file of 200 mailboxes of a domain not
/// added yet is one mistake, not 200.
fn report_unknown_domains(unknown: Vec<(String, usize, usize)>, checked: &mut Checked) {
    for (domain, line, rows) in unknown {
        let count = if rows == 1 {
            String::new()
        } else {
            format!(" ({rows} rows, the first here)")
        };
        checked.errors.push(Issue::new(
            line,
            format!(
                "domain {domain} not found{count}; add it with `portcullis domains add {domain}` \
                 or pass --create-domains"
            ),
        ));
    }
    checked.errors.sort_by_key(|issue| issue.line);
}

/// The index of each of [`COLUMNS`] in the header.
fn columns(header: &Record) -> Result<[usize; 4], String> {
    let names: Vec<String> = header
        .fields
        .iter()
        .map(|f| f.trim().to_lowercase())
        .collect();
    let mut found = [usize::MAX; 4];
    let mut missing = Vec::new();
    for (slot, column) in found.iter_mut().zip(COLUMNS) {
        let mut at = names.iter().enumerate().filter(|(_, n)| *n == column);
        match (at.next(), at.next()) {
            (Some((index, _)), None) => *slot = index,
            (Some(_), Some(_)) => {
                return Err(format!(
                    "the header names the column {column} twice; it must appear once"
                ));
            }
            (None, _) => missing.push(column),
        }
    }
    if missing.is_empty() {
        return Ok(found);
    }
    if let [only] = header.fields.as_slice()
        && let Some(separator) = [';', '\t'].into_iter().find(|c| only.contains(*c))
    {
        return Err(separated_by(separator, only));
    }
    Err(format!(
        "the header lacks the column{} {}; the first line must name the columns {} (any order, \
         any case; other columns are ignored), and it reads {:?}",
        if missing.len() == 1 { "" } else { "s" },
        missing.join(", "),
        COLUMNS.join(","),
        header.fields.join(",")
    ))
}

/// A header that is one field holding the separator: the file is not comma-separated.
fn separated_by(separator: char, header: &str) -> String {
    let (name, origin) = match separator {
        ';' => (
            "semicolons",
            "as spreadsheets set to a European locale save \"CSV\"",
        ),
        _ => ("tabs", "as spreadsheets save \"text\" or copy a table"),
    };
    format!(
        "the file is separated by {name} ({origin}), and it reads {header:?}; a provisioning \
         CSV is separated by commas: save it as \"CSV UTF-8 (comma delimited)\", or replace \
         the {name} with commas (put a field that contains a comma in double quotes)"
    )
}

fn check_row(
    record: &Record,
    width: usize,
    columns: &[usize; 4],
    domains: &HashMap<String, Option<String>>,
    rules: &Rules,
    seen: &mut Seen,
    checked: &mut Checked,
) -> Option<Row> {
    let line = record.line;
    if record.fields.len() != width {
        checked.errors.push(Issue::new(
            line,
            format!(
                "the row has {} field{} but the header has {width}; a field that contains a \
                 comma (a password, say) must be in double quotes",
                record.fields.len(),
                if record.fields.len() == 1 { "" } else { "s" },
            ),
        ));
        return None;
    }
    let errors_before = checked.errors.len();
    let [host, port, username, password] = columns.map(|index| record.fields[index].as_str());
    let (host, port, username) = (host.trim(), port.trim(), username.trim());
    let mut error = |message: String| checked.errors.push(Issue::new(line, message));

    let address = match parse_address(username) {
        Ok(address) => Some(address),
        Err(message) => {
            error(message);
            None
        }
    };
    if let Some(address) = &address {
        if let Some(first) = seen.first_line_of.get(address) {
            error(format!(
                "duplicate row: username {address} already appears on line {first}"
            ));
        } else {
            seen.first_line_of.insert(address.clone(), line);
        }
    }
    let domain = address.as_deref().and_then(domain_of);
    let mut domain_unknown = false;
    let configured = match domain.map(|d| (d, domains.get(d))) {
        Some((domain, None)) if !rules.create_domains => {
            domain_unknown = true;
            match seen
                .unknown_domains
                .iter_mut()
                .find(|(d, _, _)| d == domain)
            {
                Some((_, _, rows)) => *rows += 1,
                None => seen.unknown_domains.push((domain.to_string(), line, 1)),
            }
            None
        }
        Some((domain, Some(Some(configured)))) => Some((domain, configured)),
        _ => None,
    };

    if host.is_empty() {
        error("the host is empty; it must name the submission server".to_string());
    } else if let Some((domain, configured)) = configured
        && !same_host(host, configured)
    {
        error(format!(
            "host {host} does not match {configured}, the host configured for domain {domain}; \
             correct the row, or change the domain's host with \
             `portcullis domains add {domain} --host {host}`"
        ));
    }
    let port = match port.parse::<u16>() {
        Ok(port) if SUBMISSION_PORTS.contains(&port) => Some(port),
        Ok(port) => {
            error(format!(
                "port {port} is not a submission port; use 587 (STARTTLS) or 465 (implicit TLS) \
                 (2587 and 2465 are accepted too)"
            ));
            None
        }
        Err(_) if port.is_empty() => {
            error("the port is empty; use 587 (STARTTLS) or 465 (implicit TLS)".to_string());
            None
        }
        Err(_) => {
            error(format!("port {port:?} is not a port number"));
            None
        }
    };

    let who = address.as_deref().unwrap_or(username);
    if password.is_empty() {
        error(format!("the password of {who} is empty"));
    } else if let Some(reason) = password::weakness(password) {
        if rules.allow_weak {
            checked.warnings.push(Issue::new(
                line,
                format!("weak password for {who}: {reason}; imported anyway (--allow-weak)"),
            ));
        } else {
            error(format!(
                "weak password for {who}: {reason} (--allow-weak imports it anyway)"
            ));
        }
    }
    // An empty password is already an error above; inspect would only say so again.
    let issues = if password.is_empty() {
        Vec::new()
    } else {
        password::inspect(password.as_bytes())
    };
    for issue in issues {
        checked.warnings.push(Issue::new(
            line,
            format!(
                "{issue} (user {who}); it is imported exactly as written, and a client that \
                 drops or changes it gets 535 5.7.8"
            ),
        ));
    }

    if checked.errors.len() != errors_before || domain_unknown {
        return None;
    }
    Some(Row {
        line,
        host: host.to_string(),
        port: port?,
        address: address?,
        password: password.to_string(),
    })
}

/// A login name from the `username` column: a full address, lower-cased.
pub fn parse_address(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err(
            "the username is empty; it must be the mailbox's full email address".to_string(),
        );
    }
    if text.starts_with('@') || text.starts_with('<') {
        return Err(format!(
            "username {text:?} is not a valid email address; write the bare address, e.g. \
             alice@example.com"
        ));
    }
    address::parse_mailbox(text)
        .map(|mailbox| canonical_username(mailbox.as_str()))
        .map_err(|e| {
            format!(
                "username {text:?} is not a valid email address ({}); it must be the full \
                 address, e.g. alice@example.com",
                e.0
            )
        })
}

/// A provisioning file: the header `host,port,username,password` and one row per account.
pub fn render(rows: &[(String, u16, String, String)]) -> String {
    let mut out = String::new();
    csv::write_record(&mut out, &COLUMNS);
    for (host, port, username, password) in rows {
        csv::write_record(&mut out, &[host, &port.to_string(), username, password]);
    }
    out
}

/// An export: the header `host,port,username` and one row per account, no passwords.
pub fn render_export(rows: &[(String, u16, String)]) -> String {
    let mut out = String::new();
    csv::write_record(&mut out, &COLUMNS[..3]);
    for (host, port, username) in rows {
        csv::write_record(&mut out, &[host, &port.to_string(), username]);
    }
    out
}

/// `count` mailbox addresses `PREFIX0001@DOMAIN`, ...: numbered from 1, zero-padded to four
/// digits (more when `count` needs them).
pub fn mailbox_names(prefix: &str, domain: &str, count: usize) -> Vec<String> {
    let width = count.to_string().len().max(4);
    (1..=count)
        .map(|n| format!("{prefix}{n:0width$}@{domain}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "Str0ng-Passw0rd";

    fn domains() -> HashMap<String, Option<String>> {
        HashMap::from([
            (
                "example.test".to_string(),
                Some("mail.example.test".to_string()),
            ),
            ("open.test".to_string(), None),
        ])
    }

    fn run(text: &str) -> Checked {
        check(text.as_bytes(), &domains(), &Rules::default())
    }

    /// The errors as (line, message), for matching.
    fn errors(checked: &Checked) -> Vec<(usize, &str)> {
        checked
            .errors
            .iter()
            .map(|i| (i.line, i.message.as_str()))
            .collect()
    }

    fn only_error(text: &str) -> (usize, String) {
        let checked = run(text);
        assert_eq!(checked.errors.len(), 1, "{:?}", checked.errors);
        (checked.errors[0].line, checked.errors[0].message.clone())
    }

    #[test]
    fn allow_weak_turns_a_weak_password_into_a_warning() {
        let text = "host,port,username,password\nmail.example.test,587,a@example.test,short\n";
        let strict = run(text);
        assert!(
            strict.errors[0]
                .message
                .ends_with("(--allow-weak imports it anyway)")
        );
        let lenient = check(
            text.as_bytes(),
            &domains(),
            &Rules {
                allow_weak: true,
                ..Rules::default()
            },
        );
        assert!(lenient.errors.is_empty(), "{:?}", lenient.errors);
        assert_eq!(lenient.rows.len(), 1);
        assert!(
            lenient.warnings[0]
                .message
                .starts_with("weak password for a@example.test: it has 5 characters")
        );
    }

    #[test]
    fn a_domain_not_found_is_one_error_however_many_rows_name_it() {
        let mut text = String::from("host,port,username,password\n");
        for n in 0..200 {
            text.push_str(&format!("h.new.test,587,m{n}@new.test,{GOOD}\n"));
        }
        text.push_str(&format!("h.other.test,587,x@other.test,{GOOD}\n"));
        let checked = run(&text);
        assert_eq!(checked.bad_rows, 201);
        assert!(checked.rows.is_empty());
        let found: Vec<(usize, &str)> = checked
            .errors
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    2,
                    "domain new.test not found (200 rows, the first here); add it with \
                     `portcullis domains add new.test` or pass --create-domains"
                ),
                (
                    202,
                    "domain other.test not found; add it with `portcullis domains add other.test` \
                     or pass --create-domains"
                )
            ]
        );
    }

    #[test]
    fn a_good_file_gives_its_rows() {
        let text = format!(
            "\u{FEFF}Username,PASSWORD, Host ,Port,notes\r\n\
             Alice@Example.test,{GOOD},MAIL.example.test.,587,first\r\n\
             bob@open.test,\"{GOOD},with comma\",anything.test,465,\"multi\r\nline\"\r\n\
             ,,,,\r\n\
             \r\n\
             carol@example.test,{GOOD}, mail.example.test , 2587 ,\r\n"
        );
        let checked = run(&text);
        assert!(checked.errors.is_empty(), "{:?}", checked.errors);
        assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
        let rows: Vec<_> = checked
            .rows
            .iter()
            .map(|r| (r.line, r.address.as_str(), r.password.as_str(), r.port))
            .collect();
        let with_comma = format!("{GOOD},with comma");
        assert_eq!(
            rows,
            [
                (2, "alice@example.test", GOOD, 587),
                (3, "bob@open.test", with_comma.as_str(), 465),
                (7, "carol@example.test", GOOD, 2587)
            ]
        );
        assert_eq!(checked.rows[2].host, "mail.example.test");
        assert!(checked.new_domains.is_empty());
    }

    #[test]
    fn header_problems() {
        let (line, message) = only_error("host,port,user,pass\nx,587,a@example.test,p\n");
        assert_eq!(line, 1);
        assert!(
            message.starts_with("the header lacks the columns username, password;"),
            "{message}"
        );
        let (_, message) = only_error("host,port,username,password,HOST\n");
        assert!(message.contains("column host twice"), "{message}");
        let (line, message) = only_error(&format!(
            "host;port;username;password\nh;587;a@example.test;{GOOD}\n"
        ));
        assert_eq!(line, 1);
        assert!(
            message.starts_with(
                "the file is separated by semicolons (as spreadsheets set to a European locale"
            ) && message.contains("save it as \"CSV UTF-8 (comma delimited)\""),
            "{message}"
        );
        let (_, message) = only_error("host\tport\tusername\tpassword\n");
        assert!(
            message.starts_with("the file is separated by tabs"),
            "{message}"
        );
        let (line, message) = only_error("");
        assert_eq!(line, 1);
        assert!(message.starts_with("the file is empty"), "{message}");
        // A file without a header: its first row is taken as one and named in the error.
        let (_, message) = only_error(&format!("mail.example.test,587,a@example.test,{GOOD}\n"));
        assert!(
            message.contains("and it reads \"mail.example.test,587"),
            "{message}"
        );
    }

    #[test]
    fn csv_syntax_errors_carry_their_line() {
        let (line, message) = only_error(&format!(
            "host,port,username,password\nmail.example.test,587,a@example.test,{GOOD}\nmail.example.test,587,b@example.test,pa\"ss\n"
        ));
        assert_eq!(line, 3);
        assert!(message.contains("quote"), "{message}");
        let checked = check(
            b"host,port,username,password\nh,587,a@example.test,caf\xe9\n",
            &domains(),
            &Rules::default(),
        );
        assert_eq!(errors(&checked), [(2, checked.errors[0].message.as_str())]);
        assert!(checked.errors[0].message.contains("UTF-8"));
    }

    #[test]
    fn every_row_error_names_its_line() {
        let text = format!(
            "host,port,username,password\n\
             mail.example.test,587,not-an-address,{GOOD}\n\
             mail.example.test,587,a@unknown.test,{GOOD}\n\
             mail.example.test,587,b@example.test,\n\
             mail.example.test,587,c@example.test,short1A\n\
             mail.example.test,587,d@example.test,alllowercaseletters\n\
             mail.example.test,587,e@example.test,{GOOD}\n\
             mail.example.test,587,E@Example.test,{GOOD}\n\
             other.example.test,587,f@example.test,{GOOD}\n\
             mail.example.test,25,g@example.test,{GOOD}\n\
             mail.example.test,smtp,h@example.test,{GOOD}\n\
             ,587,i@example.test,{GOOD}\n\
             mail.example.test,587,j@example.test,{GOOD},extra\n\
             mail.example.test,587,k@example.test\n\
             mail.example.test,587,,{GOOD}\n\
             mail.example.test,,l@example.test,{GOOD}\n"
        );
        let checked = run(&text);
        let found = errors(&checked);
        let expect: [(usize, &str); 15] = [
            (
                2,
                "username \"not-an-address\" is not a valid email address (the address has no @domain)",
            ),
            (
                3,
                "domain unknown.test not found; add it with `portcullis domains add unknown.test` or pass --create-domains",
            ),
            (4, "the password of b@example.test is empty"),
            (
                5,
                "weak password for c@example.test: it has 7 characters; at least 12 are required",
            ),
            (
                6,
                "weak password for d@example.test: it consists of lower-case letters only",
            ),
            (
                8,
                "duplicate row: username e@example.test already appears on line 7",
            ),
            (
                9,
                "host other.example.test does not match mail.example.test, the host configured for domain example.test",
            ),
            (10, "port 25 is not a submission port"),
            (11, "port \"smtp\" is not a port number"),
            (12, "the host is empty"),
            (13, "the row has 5 fields but the header has 4"),
            (14, "the row has 3 fields but the header has 4"),
            (15, "the username is empty"),
            (16, "the port is empty"),
            (0, ""),
        ];
        assert_eq!(found.len(), expect.len() - 1, "{found:#?}");
        for ((line, message), (want_line, want)) in found.iter().zip(expect) {
            assert_eq!(*line, want_line, "{message}");
            assert!(
                message.starts_with(want),
                "line {line}: {message}\n  wanted {want}"
            );
        }
        assert_eq!(checked.rows.len(), 1, "only line 7 is good");
        assert_eq!(checked.rows[0].line, 7);
    }

    #[test]
    fn a_row_with_several_problems_reports_each() {
        let checked = run("host,port,username,password\nwrong.test,25,x@example.test,\n");
        let lines: Vec<usize> = checked.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 2, 2], "{:?}", checked.errors);
    }

    #[test]
    fn unknown_domains_may_be_created() {
        let text = format!(
            "host,port,username,password\nh.test,587,a@new.test,{GOOD}\nh.test,587,b@new.test,{GOOD}\nh.test,587,c@open.test,{GOOD}\n"
        );
        let rules = Rules {
            create_domains: true,
            ..Rules::default()
        };
        let checked = check(text.as_bytes(), &domains(), &rules);
        assert!(checked.errors.is_empty(), "{:?}", checked.errors);
        assert_eq!(checked.new_domains, ["new.test"]);
        assert_eq!(checked.rows.len(), 3);
    }

    #[test]
    fn invisible_characters_and_surrounding_whitespace_warn_with_the_line() {
        let text = format!(
            "host,port,username,password\n\
             mail.example.test,587,a@example.test,\" {GOOD}\"\n\
             mail.example.test,587,b@example.test,{GOOD}\u{200B}x\n\
             mail.example.test,587,c@example.test,{GOOD}\u{00A0}\n\
             mail.example.test,587,d@example.test,\u{FEFF}{GOOD}\n\
             mail.example.test,587,e@example.test,{GOOD}\r\r\n\
             mail.example.test,587,f@example.test,{GOOD}\u{200C}\u{200D}x\n\
             mail.example.test,587,g@example.test,{GOOD}\n"
        );
        let checked = run(&text);
        assert!(checked.errors.is_empty(), "{:?}", checked.errors);
        assert_eq!(checked.rows.len(), 7, "warnings do not stop the import");
        let warnings: Vec<(usize, &str)> = checked
            .warnings
            .iter()
            .map(|w| (w.line, w.message.as_str()))
            .collect();
        let expect = [
            (2, "the password starts with a space (user a@example.test)"),
            (3, "the password contains a zero-width space (U+200B"),
            (4, "the password ends with a no-break space (U+00A0"),
            (5, "the password starts with a byte order mark (U+FEFF"),
            (
                6,
                "the password ends with a carriage return (\\r) (user e@example.test)",
            ),
            (7, "the password contains a zero-width non-joiner (U+200C"),
            (7, "the password contains a zero-width joiner (U+200D"),
        ];
        assert_eq!(warnings.len(), expect.len(), "{warnings:#?}");
        for ((line, message), (want_line, want)) in warnings.iter().zip(expect) {
            assert_eq!(*line, want_line, "{message}");
            assert!(message.starts_with(want), "{message}");
            assert!(message.contains("535 5.7.8"), "{message}");
        }
        assert_eq!(checked.rows[4].password, format!("{GOOD}\r"));
    }

    #[test]
    fn rendered_files_read_back() {
        let text = render(&[
            (
                "mail.example.test".into(),
                587,
                "a@example.test".into(),
                GOOD.into(),
            ),
            (
                "mail.example.test".into(),
                587,
                "b@example.test".into(),
                format!("{GOOD},\"q\""),
            ),
        ]);
        assert!(
            text.starts_with(
                "host,port,username,password\r\nmail.example.test,587,a@example.test,"
            )
        );
        let checked = run(&text);
        assert!(checked.errors.is_empty(), "{:?}", checked.errors);
        assert_eq!(checked.rows[1].password, format!("{GOOD},\"q\""));
        assert_eq!(
            render_export(&[("h.test".into(), 587, "a@example.test".into())]),
            "host,port,username\r\nh.test,587,a@example.test\r\n"
        );
    }

    #[test]
    fn mailbox_names_are_numbered_and_padded() {
        assert_eq!(
            mailbox_names("mbox", "example.test", 2),
            ["mbox0001@example.test", "mbox0002@example.test"]
        );
        assert_eq!(mailbox_names("m", "d.test", 12345)[0], "m00001@d.test");
    }
}
