//! The `throng-load` command: `hold` and `echo` (see [`throng_load::args::USAGE`]).
//!
//! Exit status: 0 when the run finished without errors, 1 when it finished with errors
//! (still reported) or could not run, 2 for a usage error.

use std::process::ExitCode;

use throng_load::args::{self, Command, USAGE};
use throng_load::{echo, hold};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let command = match args::parse(&argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("throng-load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Hold(opts) => match hold::run(opts) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("throng-load hold: failures (see the JSON report)");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("throng-load hold: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Echo(opts) => {
            let processes = opts.process_count();
            let result = if opts.child {
                echo::run_child(&opts)
            } else if processes > 1 {
                echo::run_spread(&opts, processes)
            } else {
                echo::run_one(&opts, |_, _| Ok(()))
            };
            let report = match result {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("throng-load echo: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if !opts.json {
                println!("{}", report.summary(&opts));
            }
            println!("{}", report.to_json(&opts, opts.child));
            if report.errors > 0 || report.lost > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
