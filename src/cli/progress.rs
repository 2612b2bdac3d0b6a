//! Progress bars on stderr, hidden with `--quiet`, `--json`, or when stderr is not a terminal.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Global;

/// A bar counting items, with rate and ETA once the total is known (`set_length`); a spinner
/// with the count and rate until then.
pub(crate) fn items_bar(global: Global, label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, draw_target(global));
    let style = ProgressStyle::with_template(
        "{prefix:>8} {spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, ETA {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Where bars draw: stderr, or nowhere when the user asked for quiet or machine output.
pub(crate) fn draw_target(global: Global) -> ProgressDrawTarget {
    if global.quiet || global.json {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    }
}

/// A bar on stderr counting `unit` with rate and ETA (its length is set by the caller's work as
/// it learns it), or none with `--quiet`/`--json`.
pub(crate) fn counter_bar(
    global: Global,
    message: &'static str,
    unit: &str,
) -> Option<ProgressBar> {
    if global.quiet || global.json {
        return None;
    }
    let template = format!(
        "{{msg}} [{{bar:36}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, eta {{eta}})"
    );
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    Some(ProgressBar::new(0).with_style(style).with_message(message))
}

/// The streaming loader's notices (row groups lost, samples substituted) on stderr, one line
/// each, above `bar` when there is one; nothing with `-q`.
pub(crate) fn show_loader_notices(notices: &[String], bar: Option<&ProgressBar>, global: Global) {
    if global.quiet || notices.is_empty() {
        return;
    }
    let print = || notices.iter().for_each(|n| eprintln!("loader: {n}"));
    match bar {
        Some(bar) => bar.suspend(print),
        None => print(),
    }
}
