//! The README's "Using the engine" snippet, verbatim: tests/readme.rs checks that the two
//! agree and runs this example.

use throng::engine::{
    Config, Decision, Handler, Message, Server, ShutdownSignals, UpgradeRequest, WebSocket,
};

struct Echo;

impl Handler for Echo {
    type State = ();
    fn on_upgrade<'r>(&mut self, req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        match req.origin() {
            Some(o) if o != "https://example.com" => Decision::reject(403),
            _ => Decision::accept(()),
        }
    }
    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, msg: Message<'_>) {
        let _ = ws.send(msg); // Err(Backpressure | Closed) says it was not sent
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Before any thread starts, so that every worker inherits the blocked mask.
    let signals = ShutdownSignals::block()?;
    let server = Server::start(Config::new("127.0.0.1:9001".parse()?), |_worker| Echo)?;
    println!("listening on ws://{}/", server.local_addr());
    signals.wait()?; // Ctrl-C or SIGTERM
    let report = server.shutdown()?; // close 1001 to every client, wait for the answers
    println!("closed {} connections", report.connections);
    Ok(())
}
