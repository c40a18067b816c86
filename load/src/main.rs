//! The `throng-load` command: `hold`, `echo` and `attack` (see [`throng_load::args::USAGE`]).
//!
//! Exit status: 0 when the run finished without errors, 1 when it finished with errors
//! (still reported) or could not run, 2 for a usage error.

use std::process::ExitCode;

use throng_load::args::{self, Command, USAGE};
use throng_load::{attack, echo, hold};

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
        Command::Attack(opts) => match attack::run(&opts) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("throng-load attack: some modes failed (see `problems`)");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("throng-load attack: {e}");
                ExitCode::FAILURE
            }
        },
        Command::AttackPeers { addr, connections } => {
            match attack::halfopen::peers(addr, connections) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("throng-load attack-peers: {e}");
                    ExitCode::FAILURE
                }
            }
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
            let result = if processes > 1 && !opts.child {
                if opts.hold_open {
                    eprintln!(
                        "throng-load echo: --hold-open needs one process (at most {} connections)",
                        echo::PER_PROCESS
                    );
                    return ExitCode::from(2);
                }
                echo::run_spread(&opts, processes)
                    .and_then(|r| echo::print_report(&opts, &r).map(|()| r))
            } else if opts.child {
                echo::run_one_then(&opts, echo::child_ready, |r| echo::print_report(&opts, r))
            } else {
                echo::run_one_then(&opts, |_, _| Ok(()), |r| echo::print_report(&opts, r))
            };
            let report = match result {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("throng-load echo: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if report.errors > 0 || report.lost > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
