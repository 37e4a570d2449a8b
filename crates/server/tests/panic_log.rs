//! Panics are logged once each, through the log, with their message, place and thread (the
//! hook `telemetry::init` installs). A process of its own: the hook is global.

use std::io;
use std::sync::{Arc, Mutex};

/// The log's lines, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("the log").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn each_panic_is_logged_once_with_its_message_place_and_thread() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    chatd_server::telemetry::log_panics();

    // A formatted message (a `String` payload) and a literal one (a `&str`).
    let formatted = std::thread::Builder::new().name("doomed".into()).spawn(|| panic!("a bug, {}", 6 * 7));
    let formatted_line = line!() - 1;
    assert!(formatted.unwrap().join().is_err());
    let literal = std::thread::Builder::new().name("fated".into()).spawn(|| panic!("another bug"));
    assert!(literal.unwrap().join().is_err());

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
    assert_eq!(panics.len(), 2, "one line per panic: {log}");
    let place = format!("location=crates/server/tests/panic_log.rs:{formatted_line}:");
    for (line, message, thread) in [
        (panics[0], "panic=\"a bug, 42\"", "thread=\"doomed\""),
        (panics[1], "panic=\"another bug\"", "thread=\"fated\""),
    ] {
        assert!(line.contains("ERROR") && line.contains(message) && line.contains(thread), "{line}");
    }
    assert!(panics[0].contains(&place), "{place} in {}", panics[0]);
}
