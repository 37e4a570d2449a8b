//! Structured logs to stderr, filtered by `--log` / `CHATD_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Colours only when stderr is a terminal, so logs that
/// are piped or collected stay plain text.
pub fn init(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
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
