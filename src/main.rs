//! The `flipstream` command: parse, dispatch, exit code. Everything else lives in `cli/` and the
//! library crates.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match cli::parse() {
        Ok(args) => args,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2)
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", cli::render_error(&err));
            ExitCode::from(cli::exit_code_of(&err))
        }
    }
}
