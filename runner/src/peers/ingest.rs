//! What the peers say, turned into observations: every line of stdout and of the events file judged against the
//! contract (and kept in `<peer>.events.jsonl`), stderr lines (kept in `<peer>.stderr`), exits. Nothing here
//! decides what the case does next.

use std::io::{BufWriter, Write as _};
use std::path::Path;

use crate::backend::Output;
use crate::events::{Line, Observation, Stream};

/// One peer's output as it is read: its log files and how many lines it wrote on each event stream. The files are
/// buffered (the events of 200 peers are over two thousand lines a second, a write each took a twelfth of the
/// runner's time) and written out at every sampling tick, when the peer exits, and when its output is dropped (a panic's
/// unwinding included).
pub struct PeerOutput {
    stdout_lines: u64,
    events_file_lines: u64,
    events_log: BufWriter<std::fs::File>,
    stderr_log: BufWriter<std::fs::File>,
}

impl PeerOutput {
    pub fn create(dir: &Path, name: &str) -> std::io::Result<Self> {
        Ok(Self {
            stdout_lines: 0,
            events_file_lines: 0,
            events_log: BufWriter::new(std::fs::File::create(
                dir.join(format!("{name}.events.jsonl")),
            )?),
            stderr_log: BufWriter::new(std::fs::File::create(dir.join(format!("{name}.stderr")))?),
        })
    }

    /// Writes out what the logs buffered.
    pub fn flush(&mut self) {
        let _ = self.events_log.flush();
        let _ = self.stderr_log.flush();
    }

    /// What one piece of output is. `stop_sent`: the runner told the peer to stop (or stopped it), so an exit
    /// is expected. A line beyond the contract gives two observations: the note, then the event.
    pub fn observations(&mut self, output: Output, stop_sent: bool) -> Vec<Observation> {
        match output {
            Output::Stdout(line) => self.event_line(Stream::Stdout, line),
            Output::EventsFile(line) => self.event_line(Stream::EventsFile, line),
            Output::Stderr(line) => {
                let _ = writeln!(self.stderr_log, "{line}");
                vec![Observation::Stderr { line }]
            }
            Output::Exited(exit) => {
                self.flush();
                vec![Observation::Exited {
                    code: exit.code,
                    expected: stop_sent,
                    oom_killed: exit.oom_killed,
                    peak_memory_bytes: exit.peak_memory_bytes,
                    memory_limit_bytes: exit.memory_limit_bytes,
                }]
            }
        }
    }

    fn event_line(&mut self, stream: Stream, line: String) -> Vec<Observation> {
        let _ = writeln!(self.events_log, "{line}");
        let counted = match stream {
            Stream::Stdout => &mut self.stdout_lines,
            Stream::EventsFile => &mut self.events_file_lines,
        };
        *counted += 1;
        let line_no = *counted;
        match Line::parse(&line) {
            Line::Event {
                line: event,
                unknown_fields,
            } => {
                let mut out = Vec::new();
                if !unknown_fields.is_empty() {
                    let what = format!("fields it does not know: {}", unknown_fields.join(", "));
                    out.push(Observation::Unknown {
                        stream,
                        line_no,
                        line,
                        what,
                    });
                }
                out.push(Observation::Event { line: event });
                out
            }
            Line::UnknownEvent { name } => vec![Observation::Unknown {
                stream,
                line_no,
                line,
                what: format!("an event it does not know: `{name}`"),
            }],
            Line::Violation(error) => vec![Observation::Malformed {
                stream,
                line_no,
                line,
                error,
            }],
        }
    }
}

/// A participant's output as it is read (the UPnP gateway): its lines judged against the participant schema and
/// kept in `<name>.events.jsonl`, its stderr in `<name>.stderr`, its exit.
pub struct ParticipantOutput {
    stdout_lines: u64,
    events_log: std::fs::File,
    stderr_log: std::fs::File,
}

impl ParticipantOutput {
    pub fn create(dir: &Path, name: &str) -> std::io::Result<Self> {
        Ok(Self {
            stdout_lines: 0,
            events_log: std::fs::File::create(dir.join(format!("{name}.events.jsonl")))?,
            stderr_log: std::fs::File::create(dir.join(format!("{name}.stderr")))?,
        })
    }

    /// What one piece of output is. `stop_sent`: the runner told it to stop, so an exit is expected.
    pub fn observation(&mut self, output: Output, stop_sent: bool) -> Observation {
        match output {
            // A participant is given no events file; a line of one would be read as stdout's.
            Output::Stdout(line) | Output::EventsFile(line) => {
                self.stdout_lines += 1;
                let _ = writeln!(self.events_log, "{line}");
                match crate::events::parse_participant_line(&line) {
                    Ok(parsed) => Observation::Participant { line: parsed },
                    Err(error) => Observation::ParticipantMalformed {
                        line_no: self.stdout_lines,
                        line,
                        error,
                    },
                }
            }
            Output::Stderr(line) => {
                let _ = writeln!(self.stderr_log, "{line}");
                Observation::ParticipantStderr { line }
            }
            Output::Exited(exit) => Observation::ParticipantExited {
                code: exit.code,
                expected: stop_sent,
            },
        }
    }
}
