//! `resume-chat-worker validate FILE`: checks a JSON-lines file of jobs offline, with exactly the
//! parser the worker uses ([`parse_job`]), before anyone enqueues it.
//!
//! Mechanism: each non-blank line is one job body; lines are read as bytes and decoded here so a
//! line that is not UTF-8 is reported as bad instead of aborting the run. The report keeps every
//! bad line (1-based line number, the jobId when it could be read, the [`InvalidJob`]) and, as
//! warnings, jobIds repeated within the file (the contract wants them unique per job; a repeat is
//! treated by the worker as a redelivery and never opens a second chat). A read error stops the
//! run and is kept in the report.

use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;

use crate::job::{InvalidJob, JobDefaults, parse_job};

/// One bad line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based.
    pub line: usize,
    pub job_id: Option<String>,
    pub error: InvalidJob,
}

/// A valid job whose jobId already appeared on an earlier line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateJobId {
    pub line: usize,
    pub job_id: String,
    pub first_line: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationReport {
    pub valid: usize,
    pub invalid: usize,
    pub errors: Vec<LineError>,
    pub duplicates: Vec<DuplicateJobId>,
    /// Set when reading stopped early; lines after it were not checked.
    pub read_error: Option<String>,
}

impl ValidationReport {
    /// True when every line was read and is a valid job (duplicates are only warnings).
    pub fn is_ok(&self) -> bool {
        self.invalid == 0 && self.read_error.is_none()
    }

    /// Like `Display`, with the contract's expectation ([`explain`]) on each error line.
    pub fn render_with_hints(&self) -> String {
        self.render(true)
    }

    fn render(&self, hints: bool) -> String {
        let mut out = String::new();
        for e in &self.errors {
            let text = if hints {
                explain(&e.error)
            } else {
                e.error.to_string()
            };
            out.push_str(&format!(
                "{}: {text}\n",
                location(e.line, e.job_id.as_deref())
            ));
        }
        for d in &self.duplicates {
            out.push_str(&format!(
                "{}: warning: jobId already used on line {} (jobIds must be unique per job; \
                 the worker would treat this one as a redelivery)\n",
                location(d.line, Some(&d.job_id)),
                d.first_line
            ));
        }
        if let Some(e) = &self.read_error {
            out.push_str(&format!("error: stopped reading: {e}\n"));
        }
        let total = self.valid + self.invalid;
        let jobs = if total == 1 { "job" } else { "jobs" };
        out.push_str(&format!(
            "{total} {jobs} checked: {} valid, {} invalid",
            self.valid, self.invalid
        ));
        if !self.duplicates.is_empty() {
            out.push_str(&format!(", {} duplicate jobId", self.duplicates.len()));
        }
        out
    }
}

fn location(line: usize, job_id: Option<&str>) -> String {
    match job_id {
        Some(id) => format!("line {line} (jobId {id})"),
        None => format!("line {line}"),
    }
}

/// One line per bad line, then duplicate warnings, then a summary line.
impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

/// Checks every non-blank line of `input` as one job.
pub fn validate_lines(mut input: impl BufRead, defaults: &JobDefaults) -> ValidationReport {
    let mut report = ValidationReport::default();
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    let mut buf = Vec::new();
    let mut line = 0usize;
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => line += 1,
            Err(e) => {
                report.read_error = Some(format!("after line {line}: {e}"));
                break;
            }
        }
        let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let result = match std::str::from_utf8(bytes) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => parse_job(text, defaults),
            Err(_) => Err(InvalidJob {
                field: None,
                message: "line is not valid UTF-8".to_owned(),
                job_id: None,
                action: None,
            }),
        };
        match result {
            Ok(job) => {
                report.valid += 1;
                match first_seen.get(&job.job_id) {
                    Some(&first_line) => report.duplicates.push(DuplicateJobId {
                        line,
                        job_id: job.job_id,
                        first_line,
                    }),
                    None => {
                        first_seen.insert(job.job_id, line);
                    }
                }
            }
            Err(error) => {
                report.invalid += 1;
                report.errors.push(LineError {
                    line,
                    job_id: error.job_id.clone(),
                    error,
                });
            }
        }
    }
    report
}

/// The error sentence followed by what the contract expects for that field, on one line.
pub fn explain(err: &InvalidJob) -> String {
    format!("{err} (expected: {})", hint(err.field.as_deref()))
}

/// What the contract expects for a field path; nested paths share their top-level field's hint.
pub fn hint(field: Option<&str>) -> &'static str {
    let Some(field) = field else {
        return "each non-blank line is one UTF-8 JSON object, e.g. \
                {\"jobId\":\"job-1\",\"sourceContactId\":\"…\",\"participant\":{\"displayName\":\"Ana\"}}";
    };
    let top = field.split(['.', '[']).next().unwrap_or(field);
    match top {
        "jobId" => "1–128 characters of A-Z a-z 0-9 . _ : -",
        "action" => "startPersistentChat (the default) or associatePersistentContact",
        "instanceId" => {
            "1–100 characters; may be left out when the worker is configured with CONNECT_INSTANCE_ID"
        }
        "contactFlowId" => {
            "1–500 characters, startPersistentChat only; may be left out when the worker is \
             configured with CONNECT_CONTACT_FLOW_ID"
        }
        "sourceContactId" => "1–256 characters: the ended chat contact to resume",
        "rehydrationType" => "ENTIRE_PAST_SESSION (the default) or FROM_SEGMENT",
        "initialContactId" => {
            "1–256 characters, required for associatePersistentContact: the current contact"
        }
        "participant" => "{\"displayName\": 1–256 characters}, required for startPersistentChat",
        "attributes" => {
            "an object of string values with keys of A-Z a-z 0-9 _ -, keys and values together \
             at most 32,768 UTF-8 bytes"
        }
        "initialMessage" => {
            "{\"contentType\", \"content\"} with content of at least 1 character and at most 1,024 \
             (text/plain, text/markdown), 12,000 (application/json) or 12,288 \
             (application/vnd.amazonaws.connect.message.interactive.response)"
        }
        "chatDurationInMinutes" => {
            "an integer from 60 to 10,080 (an account without custom chat durations refuses \
             any: such jobs fail with ChatDurationNotSupported)"
        }
        "supportedMessagingContentTypes" => {
            "an array that contains text/plain, each one of text/plain, text/markdown, \
             application/json, application/vnd.amazonaws.connect.message.interactive, \
             application/vnd.amazonaws.connect.message.interactive.response (both interactive \
             types when segmentAttributes sets connect:Subtype to connect:Guide)"
        }
        "disconnectOnCustomerExit" => {
            "[\"AGENT\"]: the agent is disconnected when the customer leaves, so the customer can \
             reach a disconnect flow such as a post-chat survey"
        }
        "segmentAttributes" => {
            "an object of keys of 1–128 characters of A-Z a-z 0-9 _ - : to values with exactly \
             one of valueString (0–1,024 characters), valueMap, valueInteger (32-bit), valueList \
             or valueArn (the last two for connect: keys only); connect:Subtype = connect:Guide \
             needs both interactive content types in supportedMessagingContentTypes"
        }
        "participantConfiguration" => "{\"responseMode\": \"INCREMENTAL\" or \"COMPLETE\"}",
        "customerId" => "1–128 characters",
        "notAfter" => "an RFC 3339 timestamp such as 2025-01-31T23:59:00Z",
        _ => "see the job table of the contract in the README",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> JobDefaults {
        JobDefaults {
            instance_id: Some("inst".into()),
            contact_flow_id: Some("flow".into()),
        }
    }

    const GOOD: &str =
        r#"{"jobId":"job-1","sourceContactId":"c1","participant":{"displayName":"Ana"}}"#;

    fn run(input: &str) -> ValidationReport {
        validate_lines(input.as_bytes(), &defaults())
    }

    #[test]
    fn counts_good_and_bad_lines_and_skips_blank_ones() {
        let input = format!(
            "{GOOD}\n\n   \n{}\nnot json\n",
            r#"{"jobId":"job-7","sourceContactId":"c","participant":{"displayName":"A"},"rehydrationType":"ALL"}"#
        );
        let r = run(&input);
        assert_eq!((r.valid, r.invalid), (1, 2));
        assert!(!r.is_ok());
        assert_eq!(r.errors[0].line, 4);
        assert_eq!(r.errors[0].job_id.as_deref(), Some("job-7"));
        assert_eq!(r.errors[0].error.field.as_deref(), Some("rehydrationType"));
        assert_eq!(r.errors[1].line, 5);
        assert_eq!(r.errors[1].job_id, None);
        assert_eq!(r.errors[1].error.field, None);
    }

    #[test]
    fn display_prints_one_line_per_error_and_a_summary() {
        let input = format!(
            "{GOOD}\n{GOOD2}\n{}\n",
            r#"{"jobId":"job-7","sourceContactId":"c","participant":{"displayName":"A"},"rehydrationType":"ALL"}"#,
            GOOD2 = GOOD.replace("job-1", "job-2")
        );
        let text = run(&input).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "line 3 (jobId job-7): field `rehydrationType` must be one of ENTIRE_PAST_SESSION, FROM_SEGMENT",
                "3 jobs checked: 2 valid, 1 invalid",
            ]
        );
    }

    #[test]
    fn unknown_job_id_is_left_out_of_the_location() {
        let text = run("[1,2]\n").to_string();
        assert!(
            text.starts_with("line 1: body must be a JSON object"),
            "{text}"
        );
        assert!(
            text.ends_with("1 job checked: 0 valid, 1 invalid"),
            "{text}"
        );
    }

    #[test]
    fn empty_input_is_ok() {
        let r = run("");
        assert!(r.is_ok());
        assert_eq!(r.to_string(), "0 jobs checked: 0 valid, 0 invalid");
    }

    #[test]
    fn crlf_line_endings_and_a_missing_final_newline_are_accepted() {
        let r = run(&format!("{GOOD}\r\n{}", GOOD.replace("job-1", "job-2")));
        assert_eq!((r.valid, r.invalid), (2, 0), "{r}");
    }

    #[test]
    fn invalid_utf8_line_is_reported_and_reading_continues() {
        let mut input = b"\xff\xfe garbage\n".to_vec();
        input.extend_from_slice(GOOD.as_bytes());
        let r = validate_lines(&input[..], &defaults());
        assert_eq!((r.valid, r.invalid), (1, 1));
        assert_eq!(r.errors[0].line, 1);
        assert!(r.errors[0].error.message.contains("UTF-8"));
    }

    #[test]
    fn line_numbers_count_blank_lines() {
        let r = run("\n\n{}\n");
        assert_eq!(r.errors[0].line, 3);
    }

    #[test]
    fn repeated_job_ids_are_warnings() {
        let r = run(&format!("{GOOD}\n{GOOD}\n"));
        assert!(r.is_ok());
        assert_eq!(
            r.duplicates,
            [DuplicateJobId {
                line: 2,
                job_id: "job-1".into(),
                first_line: 1
            }]
        );
        let text = r.to_string();
        assert!(
            text.contains("line 2 (jobId job-1): warning: jobId already used on line 1"),
            "{text}"
        );
        assert!(text.ends_with(", 1 duplicate jobId"), "{text}");
    }

    #[test]
    fn uses_the_defaults_it_is_given() {
        let r = validate_lines(GOOD.as_bytes(), &JobDefaults::default());
        assert_eq!(r.errors[0].error.field.as_deref(), Some("instanceId"));
    }

    struct FailingReader;
    impl std::io::Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }

    #[test]
    fn read_error_stops_and_is_reported() {
        let r = validate_lines(std::io::BufReader::new(FailingReader), &defaults());
        assert!(!r.is_ok());
        assert!(
            r.to_string()
                .contains("stopped reading: after line 0: disk on fire"),
            "{r}"
        );
    }

    #[test]
    fn explain_adds_the_contract_expectation() {
        let err = match parse_job(r#"{"jobId":"bad id"}"#, &defaults()) {
            Err(e) => e,
            Ok(j) => panic!("must be invalid: {j:?}"),
        };
        assert_eq!(
            explain(&err),
            "field `jobId` must contain only A-Z a-z 0-9 . _ : - \
             (expected: 1–128 characters of A-Z a-z 0-9 . _ : -)"
        );
    }

    #[test]
    fn hints_cover_nested_paths_and_every_contract_field() {
        assert_eq!(hint(Some("attributes.my-key")), hint(Some("attributes")));
        assert_eq!(
            hint(Some("initialMessage.content")),
            hint(Some("initialMessage"))
        );
        assert_eq!(
            hint(Some("participant.displayName")),
            hint(Some("participant"))
        );
        assert_eq!(
            hint(Some("supportedMessagingContentTypes[3]")),
            hint(Some("supportedMessagingContentTypes"))
        );
        assert!(hint(Some("chatDurationInMinutes")).contains("60 to 10,080"));
        assert_eq!(
            hint(Some("segmentAttributes.connect:Subtype.valueString")),
            hint(Some("segmentAttributes"))
        );
        assert!(hint(Some("supportedMessagingContentTypes")).contains("connect:Guide"));
        assert!(hint(None).contains("JSON object"));
        let fallback = hint(Some("noSuchField"));
        for field in [
            "jobId",
            "action",
            "instanceId",
            "contactFlowId",
            "sourceContactId",
            "rehydrationType",
            "initialContactId",
            "participant",
            "attributes",
            "disconnectOnCustomerExit",
            "segmentAttributes",
            "participantConfiguration",
            "initialMessage",
            "chatDurationInMinutes",
            "supportedMessagingContentTypes",
            "customerId",
            "notAfter",
        ] {
            assert_ne!(hint(Some(field)), fallback, "{field} has no hint");
        }
    }

    #[test]
    fn fixture_of_valid_jobs_is_valid() {
        let r = run(include_str!("../../tests/data/jobs/valid.jsonl"));
        assert!(r.is_ok(), "{r}");
        assert_eq!(r.valid, 5);
    }

    #[test]
    fn fixture_of_invalid_jobs_fails_each_line_on_the_intended_field() {
        let r = run(include_str!("../../tests/data/jobs/invalid.jsonl"));
        let fields: Vec<(usize, Option<&str>)> = r
            .errors
            .iter()
            .map(|e| (e.line, e.error.field.as_deref()))
            .collect();
        let expected = [
            None,
            None,
            Some("jobId"),
            Some("jobId"),
            Some("action"),
            Some("sourceContactId"),
            Some("rehydrationType"),
            Some("initialContactId"),
            Some("participant.displayName"),
            Some("participant.displayName"),
            Some("attributes.bad key"),
            Some("initialMessage.contentType"),
            Some("initialMessage.content"),
            Some("chatDurationInMinutes"),
            Some("chatDurationInMinutes"),
            Some("supportedMessagingContentTypes"),
            Some("customerId"),
            Some("notAfter"),
        ];
        let expected: Vec<(usize, Option<&str>)> = expected
            .into_iter()
            .enumerate()
            .map(|(i, f)| (i + 1, f))
            .collect();
        assert_eq!(fields, expected);
        assert_eq!((r.valid, r.invalid), (0, 18));
    }

    #[test]
    fn render_with_hints_keeps_one_line_per_error() {
        let r = run("{}\n");
        let text = r.render_with_hints();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("(expected: 1–128 characters"), "{text}");
    }
}
