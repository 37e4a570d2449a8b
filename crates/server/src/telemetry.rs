//! Structured logs to stderr, filtered by `--log` / `CHATD_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber, and reports panics through it ([`log_panics`]). Colours
/// only when stderr is a terminal, so logs that are piped or collected stay plain text.
pub fn init(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    log_panics();
}

/// Replaces the default panic hook, which prints to stderr beside the log, with one that
/// logs each panic once, as an error event: its message, where it happened, the thread, and
/// a backtrace when `RUST_BACKTRACE` asks for one. A request handler's panic is then answered
/// with a 500 (`startup::wrap`) without being logged a second time.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        let current = std::thread::current();
        let thread = current.name().unwrap_or("(unnamed)");
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!(panic = what, %location, thread, %backtrace, "panicked");
        } else {
            tracing::error!(panic = what, %location, thread, "panicked");
        }
    }));
}

/// Listens for SIGTERM and Ctrl-C (SIGINT) from this call on, and returns a future that
/// completes on the first of them. The handlers are installed here, not when the future is
/// first polled: a signal sent as soon as chatd says it is listening must find them, or its
/// default action would end the process without draining accepted writes.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let signalled = {
        use tokio::signal::unix::{SignalKind, signal};
        let (mut term, mut interrupt) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
        async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = interrupt.recv() => {},
            }
        }
    };
    #[cfg(not(unix))]
    let signalled = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    Ok(async move {
        signalled.await;
        tracing::info!("shutdown requested; draining accepted writes");
    })
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    /// A signal that arrives after `shutdown_signal` returned, but before anything polled
    /// its future, still ends the wait: the handlers are installed by the call itself. (A
    /// SIGTERM with no handler yet would end this test process by the default action.)
    #[tokio::test]
    async fn handlers_are_in_place_before_the_future_is_polled() {
        let stop = super::shutdown_signal().expect("the handlers install");
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM).unwrap();
        tokio::time::timeout(Duration::from_secs(30), stop).await.expect("SIGTERM ends the wait");
    }
}
