//! A small RFC 4180 reader and writer, enough for provisioning files.
//!
//! Reading: UTF-8 with an optional byte order mark; records end with CRLF or LF (both may
//! appear in one file); fields are separated by commas; a field that starts with `"` is quoted
//! and may hold commas, line breaks and `""` (one quote). Strict where a guess could change a
//! password: a quote inside an unquoted field, text after a closing quote and an unclosed quote
//! are errors, never repaired. A CR that is not followed by LF is data. Empty lines are skipped.
//! Every record carries the line it starts on, for error messages.

use std::fmt;

/// One record and the (1-based) line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for CsvError {}

/// Decodes file content: UTF-8 (the line of the first bad byte is reported) without its BOM.
pub fn decode(bytes: &[u8]) -> Result<&str, CsvError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| CsvError {
        line: 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
        message:
            "the file is not valid UTF-8; save it as UTF-8 (CSV UTF-8 in spreadsheet programs)"
                .to_string(),
    })
}

/// Parses the whole text into records. A leading U+FEFF (BOM) is skipped.
pub fn parse(text: &str) -> Result<Vec<Record>, CsvError> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let bytes = text.as_bytes();
    let mut records = Vec::new();
    let mut line = 1;
    let mut at = 0;
    while at < bytes.len() {
        // An empty line (LF or CRLF alone) is no record.
        if bytes[at] == b'\n' {
            at += 1;
            line += 1;
            continue;
        }
        if bytes[at..].starts_with(b"\r\n") {
            at += 2;
            line += 1;
            continue;
        }
        let start_line = line;
        let mut fields = Vec::new();
        loop {
            let (field, next) = if bytes[at..].first() == Some(&b'"') {
                quoted(text, at, &mut line, fields.len() + 1)?
            } else {
                unquoted(text, at, line, fields.len() + 1)?
            };
            fields.push(field);
            at = next;
            // `at` is at a comma, a line end or the end of the text.
            match bytes.get(at) {
                Some(b',') => at += 1,
                Some(b'\n') => {
                    at += 1;
                    line += 1;
                    break;
                }
                Some(b'\r') => {
                    at += 2; // unquoted and quoted only stop at a CR that starts CRLF
                    line += 1;
                    break;
                }
                _ => break,
            }
        }
        records.push(Record {
            line: start_line,
            fields,
        });
    }
    Ok(records)
}

/// An unquoted field from `at` to the next comma or line end.
fn unquoted(
    text: &str,
    at: usize,
    line: usize,
    number: usize,
) -> Result<(String, usize), CsvError> {
    let bytes = text.as_bytes();
    let mut end = at;
    while end < bytes.len() {
        match bytes[end] {
            b',' | b'\n' => break,
            b'\r' if bytes.get(end + 1) == Some(&b'\n') => break,
            b'"' => {
                return Err(CsvError {
                    line,
                    message: format!(
                        "field {number} has a quote (\") but does not start with one; \
                         put the whole field in quotes and double the quote inside (\"\")"
                    ),
                });
            }
            _ => end += 1,
        }
    }
    Ok((text[at..end].to_string(), end))
}

/// A quoted field starting at the quote at `at`; returns the content and the index after the
/// closing quote. `line` advances over line breaks inside the field.
fn quoted(
    text: &str,
    at: usize,
    line: &mut usize,
    number: usize,
) -> Result<(String, usize), CsvError> {
    let bytes = text.as_bytes();
    let start_line = *line;
    let mut field = String::new();
    let mut from = at + 1; // start of the text not yet copied
    let mut index = from;
    loop {
        match bytes.get(index) {
            None => {
                return Err(CsvError {
                    line: start_line,
                    message: format!(
                        "field {number} opens a quote that is never closed before the end of the file"
                    ),
                });
            }
            Some(b'"') if bytes.get(index + 1) == Some(&b'"') => {
                field.push_str(&text[from..=index]);
                index += 2;
                from = index;
            }
            Some(b'"') => {
                field.push_str(&text[from..index]);
                let after = index + 1;
                return match bytes.get(after) {
                    None | Some(b',') | Some(b'\n') => Ok((field, after)),
                    Some(b'\r') if bytes.get(after + 1) == Some(&b'\n') => Ok((field, after)),
                    Some(_) => Err(CsvError {
                        line: *line,
                        message: format!(
                            "field {number} has text after its closing quote; a quote inside a \
                             quoted field must be doubled (\"\")"
                        ),
                    }),
                };
            }
            Some(b'\n') => {
                *line += 1;
                index += 1;
            }
            Some(_) => index += 1,
        }
    }
}

/// Appends one record, quoting the fields that need it, terminated by CRLF (RFC 4180).
pub fn write_record(out: &mut String, fields: &[&str]) {
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let needs_quotes = field.contains([',', '"', '\r', '\n'])
            || field.starts_with(char::is_whitespace)
            || field.ends_with(char::is_whitespace);
        if needs_quotes {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records of `text` as (line, fields), for comparing with literals.
    fn fields(text: &str) -> Vec<(usize, Vec<String>)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|r| (r.line, r.fields))
            .collect()
    }

    fn rows(expected: &[(usize, &[&str])]) -> Vec<(usize, Vec<String>)> {
        expected
            .iter()
            .map(|(line, fields)| (*line, fields.iter().map(|f| f.to_string()).collect()))
            .collect()
    }

    #[test]
    fn plain_records_with_lf_crlf_and_no_final_line_end() {
        assert_eq!(
            fields("a,b,c\nd,e,f\r\ng,h,i"),
            rows(&[
                (1, &["a", "b", "c"]),
                (2, &["d", "e", "f"]),
                (3, &["g", "h", "i"])
            ])
        );
        assert_eq!(fields("a,b\r\n"), rows(&[(1, &["a", "b"])]));
        assert_eq!(fields(""), rows(&[]));
    }

    #[test]
    fn empty_fields_and_empty_lines() {
        assert_eq!(
            fields("a,,c\n\n\r\n,,\n"),
            rows(&[(1, &["a", "", "c"]), (4, &["", "", ""])])
        );
        assert_eq!(fields("a,\n"), rows(&[(1, &["a", ""])]));
    }

    #[test]
    fn quoted_fields_hold_commas_quotes_and_line_breaks() {
        assert_eq!(
            fields("\"a,b\",\"say \"\"hi\"\"\",\"two\r\nlines\nhere\"\nnext,\"\"\n"),
            rows(&[
                (1, &["a,b", "say \"hi\"", "two\r\nlines\nhere"]),
                (4, &["next", ""])
            ])
        );
        assert_eq!(fields("\"\"\"\""), rows(&[(1, &["\""])]));
        assert_eq!(fields("x,\"end\""), rows(&[(1, &["x", "end"])]));
        assert_eq!(fields("\"é,ü\",ß\r\n"), rows(&[(1, &["é,ü", "ß"])]));
    }

    #[test]
    fn a_bom_is_skipped_and_a_lone_cr_is_data() {
        assert_eq!(
            fields("\u{FEFF}host,port\n"),
            rows(&[(1, &["host", "port"])])
        );
        assert_eq!(decode(b"\xEF\xBB\xBFa,b").unwrap(), "a,b");
        assert_eq!(fields("a,pw\r\r\n"), rows(&[(1, &["a", "pw\r"])]));
        assert_eq!(fields("a,p\rw\n"), rows(&[(1, &["a", "p\rw"])]));
    }

    #[test]
    fn spaces_are_kept() {
        assert_eq!(fields(" a , b \n"), rows(&[(1, &[" a ", " b "])]));
    }

    #[test]
    fn malformed_quoting_is_an_error_with_its_line() {
        let error = parse("h\nok,x\nbad,ab\"c\n").unwrap_err();
        assert_eq!(error.line, 3);
        assert!(error.message.starts_with("field 2 has a quote"), "{error}");

        let error = parse("h\n\"abc\"def,x\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(
            error.message.contains("text after its closing quote"),
            "{error}"
        );

        let error = parse("h\nx,\"never\nclosed\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.message.contains("never closed"), "{error}");
    }

    #[test]
    fn line_numbers_count_line_breaks_inside_quotes() {
        let records = parse("h\n\"a\nb\nc\",d\ne,f\n").unwrap();
        assert_eq!(records[1].line, 2);
        assert_eq!(records[2].line, 5);
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let error = decode(b"host\nx,caf\xe9\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.message.contains("UTF-8"));
    }

    #[test]
    fn written_records_read_back() {
        let mut out = String::new();
        let tricky = ["plain", "a,b", "say \"hi\"", "two\r\nlines", " pad ", ""];
        write_record(&mut out, &tricky);
        write_record(&mut out, &["x", "y"]);
        assert!(
            out.starts_with("plain,\"a,b\",\"say \"\"hi\"\"\",\"two\r\nlines\",\" pad \",\r\n")
        );
        let records = parse(&out).unwrap();
        assert_eq!(records[0].fields, tricky);
        assert_eq!(records[1].fields, ["x", "y"]);
        assert_eq!(records[1].line, 3);
    }
}
